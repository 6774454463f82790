/**
 * TVIX_S3_STATS=FILE (src/backends/s3/client.ts): a process using S3
 * appends one JSON line of the requests it sent when it exits, which the
 * bench reads (bench/shared.ts). Against a real S3 server: the PUTs that
 * created an object are the objects in the bucket, and a second import of
 * the same tree creates none.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { parseStoreUrl } from '../../src/backends/registry.js'
import type { S3Address } from '../../src/backends/s3/address.js'
import { S3BlobService } from '../../src/backends/s3/blob.js'
import { S3Client, s3Requests } from '../../src/backends/s3/client.js'
import { iterateSource } from '../../src/castore/blob-service.js'
import { runCli } from '../helpers/cli.js'
import { backendsForTests, freshBucket } from '../helpers/suite-servers.js'
import { makeTree } from '../helpers/trees.js'

const servers = await backendsForTests()
const skip = typeof servers === 'string' ? servers : !servers.s3 ? 'no S3 server' : undefined

describe('S3 request counts (TVIX_S3_STATS)', { skip }, () => {
  test('one line per process at exit; created PUTs = objects stored; a re-import creates nothing', async () => {
    const s3 = typeof servers === 'string' ? undefined : servers.s3!
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-s3-stats-'))
    const bucket = await freshBucket(s3!)
    const client = new S3Client(parseStoreUrl(bucket) as S3Address, s3!)
    try {
      const tree = makeTree(path.join(cwd, 'trees'), 'big-file')
      const stats = path.join(cwd, 'stats.jsonl')
      const env = { AWS_ACCESS_KEY_ID: s3!.accessKeyId, AWS_SECRET_ACCESS_KEY: s3!.secretAccessKey, TVIX_S3_STATS: stats }
      const importOnce = async () => {
        const r = await runCli(['import', tree, '--store', path.join(cwd, 'meta'), '--blob-service-addr', bucket], { cwd, env })
        assert.equal(r.code, 0, r.stderr)
        const lines = fs.readFileSync(stats, 'utf8').trim().split('\n')
        return JSON.parse(lines[lines.length - 1]!) as Record<string, number>
      }
      const first = await importOnce()
      const objects = [...(await client.listKeys('chunks/')), ...(await client.listKeys('blobs/'))]
      assert.ok(objects.length > 1, `the big file is several chunks: ${objects.length} objects`)
      assert.equal(first.created, objects.length, JSON.stringify(first))
      assert.ok(first.PUT! >= first.created!, JSON.stringify(first))
      assert.ok(first.bytesSent! > 0 && first.LIST === 0 && first.DELETE === 0, JSON.stringify(first))
      const second = await importOnce()
      assert.equal(fs.readFileSync(stats, 'utf8').trim().split('\n').length, 2, 'one line per process')
      assert.equal(second.created, 0, JSON.stringify(second))
      assert.equal((await client.listKeys('chunks/')).length + (await client.listKeys('blobs/')).length, objects.length)
    } finally {
      await client.close()
      fs.rmSync(cwd, { recursive: true, force: true })
    }
  })

  test('the chunk list of a one-chunk blob (a daemon\'s StatBlob with send_chunks, for most files) costs one HEAD; of a chunked blob, a HEAD and a GET', async () => {
    const s3 = typeof servers === 'string' ? undefined : servers.s3!
    const client = new S3Client(parseStoreUrl(await freshBucket(s3!)) as S3Address, s3!)
    const blobs = new S3BlobService(client)
    try {
      const small = await blobs.put(iterateSource(Buffer.from('a small file')))
      const big = await blobs.put(iterateSource(Buffer.alloc(3 << 20, 7).map((_, i) => (i * 2654435761) >>> 24)))
      const requests = async (d: Uint8Array) => {
        const before = { ...s3Requests }
        const chunks = await blobs.chunks(d)
        return { chunks: chunks?.length, HEAD: s3Requests.HEAD! - before.HEAD!, GET: s3Requests.GET! - before.GET! }
      }
      assert.deepEqual(await requests(small.digest), { chunks: 0, HEAD: 1, GET: 0 })
      const chunked = await requests(big.digest)
      assert.ok(chunked.chunks! > 1, `a 3 MiB blob is several chunks: ${chunked.chunks}`)
      assert.deepEqual({ HEAD: chunked.HEAD, GET: chunked.GET }, { HEAD: 1, GET: 1 })
    } finally {
      await client.close()
    }
  })
})
