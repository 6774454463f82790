/**
 * The S3 blob backend end to end, through the CLI, against a real S3 server
 * (Ceph radosgw, test/helpers/servers.ts) and real Nix: trees import to the store
 * paths `nix-store --add` gives and export to `nix-store --dump`'s bytes;
 * chunks two releases share are stored once; a chunk corrupted in the
 * bucket is refused; a missing bucket, wrong credentials and an
 * unreachable server are one error line each.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { parseStoreUrl } from '../../src/backends/registry.js'
import type { S3Address } from '../../src/backends/s3/address.js'
import { S3Client } from '../../src/backends/s3/client.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { backendsForTests, freshBucket } from '../helpers/suite-servers.js'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

const servers = await backendsForTests()
const skip = typeof servers === 'string' ? servers : !servers.s3 ? 'no S3 server' : nixMissing()

describe('S3 blobs through the CLI', { skip }, () => {
  const s3 = typeof servers === 'string' ? undefined : servers.s3!
  const env = () => ({ AWS_ACCESS_KEY_ID: s3!.accessKeyId, AWS_SECRET_ACCESS_KEY: s3!.secretAccessKey })
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-s3-'))
  const nix = new NixStore(path.join(cwd, 'nix'))

  /** The CLI on a store whose blobs are in `bucketUrl` and the rest in the folder `meta`. */
  const cli = (bucketUrl: string, meta: string, args: string[], extraEnv: Record<string, string> = env()) =>
    runCli([...args, '--store', path.join(cwd, meta), '--blob-service-addr', bucketUrl], { cwd, env: extraEnv })

  for (const kind of ['mixed', 'odd-names', 'big-file', 'wide'] as const) {
    test(`${kind}: import gives nix-store --add's path, export-nar gives nix-store --dump's bytes`, async () => {
      const tree = makeTree(path.join(cwd, 'trees'), kind)
      const bucket = await freshBucket(s3!)
      const imported = await cli(bucket, `meta-${kind}`, ['import', tree])
      assert.equal(imported.code, 0, imported.stderr)
      const storePath = imported.stdout.toString().trim()
      assert.equal(storePath, nix.pathOf(tree))
      const exported = await cli(bucket, `meta-${kind}`, ['export-nar', storePath])
      assert.equal(exported.code, 0, exported.stderr)
      assert.ok(exported.stdout.equals(NixStore.dump(tree)), 'NAR bytes differ from nix-store --dump')
    })
  }

  test('two releases of a large file: the second adds only the chunks around its change', async () => {
    const bucket = await freshBucket(s3!)
    const addr = parseStoreUrl(bucket) as S3Address
    const client = new S3Client(addr, s3!)
    const objects = async () => (await client.listKeys('chunks/')).length
    try {
      const v1 = randomBytes(8 << 20, 81)
      const v2 = Buffer.from(v1)
      v2.write('a change in the middle', 4 << 20)
      fs.mkdirSync(path.join(cwd, 'rel1'))
      fs.mkdirSync(path.join(cwd, 'rel2'))
      fs.writeFileSync(path.join(cwd, 'rel1', 'lib.so'), v1)
      fs.writeFileSync(path.join(cwd, 'rel2', 'lib.so'), v2)
      assert.equal((await cli(bucket, 'meta-rel', ['import', path.join(cwd, 'rel1')])).code, 0)
      const first = await objects()
      assert.ok(first > 32, `8 MiB is many chunks (${first})`)
      assert.equal((await cli(bucket, 'meta-rel', ['import', path.join(cwd, 'rel2')])).code, 0)
      const added = (await objects()) - first
      assert.ok(added >= 1 && added <= 3, `the second release added ${added} chunks`)
    } finally {
      await client.close()
    }
  })

  test('a chunk corrupted in the bucket: cat fails with one error line, and not one byte of the bad chunk comes out', async () => {
    const bucket = await freshBucket(s3!)
    const client = new S3Client(parseStoreUrl(bucket) as S3Address, s3!)
    try {
      const data = randomBytes(2 << 20, 82)
      fs.mkdirSync(path.join(cwd, 'corrupt'))
      fs.writeFileSync(path.join(cwd, 'corrupt', 'f'), data)
      const imported = await cli(bucket, 'meta-corrupt', ['import', path.join(cwd, 'corrupt')])
      assert.equal(imported.code, 0, imported.stderr)
      const storePath = imported.stdout.toString().trim()
      // The object of the chunk that holds byte 1 MiB: overwritten with the same length of other bytes, stored raw.
      const keys = await client.listKeys('chunks/')
      let at = 0
      let victim: { key: string; start: number } | undefined
      for (const { chunk, start } of chunksOf(data)) {
        if (start <= 1 << 20 && 1 << 20 < start + chunk.length) victim = { key: `chunks/${toHex(b3(chunk))}`, start }
        at += chunk.length
      }
      assert.ok(victim && keys.includes(victim.key), 'the chunk is in the bucket')
      const obj = (await client.get(victim.key))!
      const bad = Buffer.from(obj.body)
      bad[bad.length - 1]! ^= 1
      await client.delete(victim.key)
      assert.ok(await client.putIfAbsent(victim.key, bad, obj.meta))
      const r = await cli(bucket, 'meta-corrupt', ['cat', `${storePath}/f`])
      assert.equal(r.code, 1)
      assertOneErrorLine(r.stderr, /corrupt/)
      assert.ok(r.stdout.length <= victim.start, `${r.stdout.length} bytes out, the bad chunk starts at ${victim.start}`)
      assert.ok(r.stdout.equals(data.subarray(0, r.stdout.length)), 'what came out is the good prefix')
    } finally {
      await client.close()
    }
  })

  test('a missing bucket, wrong credentials, an unreachable server: one error line each, nothing stored', async () => {
    const tree = makeTree(path.join(cwd, 'trees'), 'single-file', 'err-tree')
    const good = await freshBucket(s3!)
    const missing = good.replace(/^s3:\/\/[^?/]+/, 's3://no-such-bucket-here')
    const r1 = await cli(missing, 'meta-err', ['import', tree])
    assert.equal(r1.code, 1, r1.stderr)
    assertOneErrorLine(r1.stderr, /^error: S3 PUT no-such-bucket-here\/chunks\/[0-9a-f]{64}: bucket "no-such-bucket-here" does not exist at http:\/\/127\.0\.0\.1:\d+$/)
    const r2 = await cli(good, 'meta-err', ['import', tree], { AWS_ACCESS_KEY_ID: s3!.accessKeyId, AWS_SECRET_ACCESS_KEY: 'wrong' })
    assert.equal(r2.code, 1, r2.stderr)
    assertOneErrorLine(r2.stderr, /^error: S3 PUT .*: HTTP 403 SignatureDoesNotMatch \(check AWS_ACCESS_KEY_ID \/ AWS_SECRET_ACCESS_KEY\)$/)
    const r3 = await cli(good, 'meta-err', ['import', tree], { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' })
    assert.equal(r3.code, 2, r3.stderr)
    assertOneErrorLine(r3.stderr, /set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/)
    const closed = good.replace(/endpoint=[^&]+/, `endpoint=${encodeURIComponent('http://127.0.0.1:1')}`)
    const r4 = await cli(closed, 'meta-err', ['import', tree])
    assert.equal(r4.code, 1, r4.stderr)
    assertOneErrorLine(r4.stderr, /^error: S3 PUT .*: cannot reach http:\/\/127\.0\.0\.1:1: /)
    // The folder for the other services holds no PathInfo: nothing was registered.
    const listed = await runCli(['path-info', '--all', '--store', path.join(cwd, 'meta-err')], { cwd })
    assert.equal(listed.stdout.toString(), '')
  })
})

/** The content-defined chunks of `data`, as the backend cuts them. */
function* chunksOf(data: Buffer): Generator<{ chunk: Buffer; start: number }> {
  const { cutPoint } = chunker
  let start = 0
  while (start < data.length) {
    const n = cutPoint(data, start, data.length)
    yield { chunk: data.subarray(start, start + n), start }
    start += n
  }
}
const chunker = await import('../../src/castore/chunker.js')
