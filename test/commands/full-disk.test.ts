import assert from 'node:assert/strict'
import { Client, credentials, status } from '@grpc/grpc-js'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { b3 } from '../../src/castore/digest.js'
import { blobChunk, digestMessage } from '../../src/grpc/messages.js'
import { runCli, spawnCli } from '../helpers/cli.js'
import { freePort, startDaemon } from '../helpers/daemon.js'
import { snapshot } from '../helpers/snapshot.js'
import { type Tmpfs, mountTmpfs } from '../helpers/tmpfs.js'
import { randomBytes } from '../helpers/trees.js'

/** One `error:` line on stderr matching `re`, nothing on stdout, a non-zero exit. */
function assertOneError(r: { code: number | null; stderr: string; stdout?: Buffer }, re: RegExp) {
  assert.notEqual(r.code, 0, r.stderr)
  if (r.stdout) assert.equal(r.stdout.length, 0, `stdout: ${r.stdout}`)
  const lines = r.stderr.split('\n').filter(Boolean)
  assert.equal(lines.length, 1, `stderr: ${r.stderr}`)
  assert.match(lines[0]!, /^error: /)
  assert.match(lines[0]!, re)
}

/**
 * A store (or an output file) on a 20 MiB tmpfs, and inputs larger than
 * that: every write path must fail with one line, remove its temp files and
 * leave the store as it was; a daemon must answer the failed Put and go on.
 */
describe('a full disk', () => {
  const SIZE_MIB = 20
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-full-'))
  let fsys: Tmpfs | undefined
  let skip: string | undefined
  let store: string
  let seeded: string[]
  const big = path.join(root, 'big.bin')
  const seed = Buffer.from('seed\n')

  before(async () => {
    const m = mountTmpfs(SIZE_MIB)
    if (typeof m === 'string') {
      skip = m
      return
    }
    fsys = m
    store = path.join(m.dir, 'store')
    fs.writeFileSync(path.join(root, 'seed'), seed)
    const r = await runCli(['import', '--store', store, path.join(root, 'seed')])
    assert.equal(r.code, 0, r.stderr)
    seeded = snapshot(store)
    fs.writeFileSync(big, randomBytes((SIZE_MIB + 10) << 20, 41))
  })
  after(() => {
    fsys?.remove()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test('import of a file larger than the free space', async (t) => {
    if (skip) return t.skip(skip)
    const r = await runCli(['import', '--store', store, big])
    assertOneError(r, new RegExp(`no space left on device while writing to the store at ${store}$`))
    assert.deepEqual(snapshot(store), seeded)
  })

  test('import of a tree of small files that fills the disk', async (t) => {
    if (skip) return t.skip(skip)
    const tree = path.join(root, 'tree')
    fs.mkdirSync(tree)
    // Small files take the one-write path, not the pack writer.
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(tree, `f${i}`), randomBytes(700 << 10, 100 + i))
    const r = await runCli(['import', '--store', store, tree])
    assertOneError(r, /no space left on device while writing to the store at /)
    assert.deepEqual(snapshot(store), seeded)
  })

  test('the daemon answers a Put that fills the disk with RESOURCE_EXHAUSTED and keeps serving', async (t) => {
    if (skip) return t.skip(skip)
    const daemon = await startDaemon(store, `127.0.0.1:${await freePort()}`)
    const client = new Client(daemon.url.replace('grpc+http://', ''), credentials.createInsecure())
    try {
      const raw = (b: Buffer) => b
      const put = await new Promise<{ code: number; details?: string }>((resolve) => {
        const call = client.makeClientStreamRequest('/tvix.castore.v1.BlobService/Put', raw, raw, (err) =>
          resolve(err ? { code: err.code, details: err.details } : { code: status.OK }),
        )
        const data = fs.readFileSync(big)
        for (let i = 0; i < data.length; i += 1 << 20) call.write(Buffer.from(blobChunk.encode(data.subarray(i, i + (1 << 20)))))
        call.end()
      })
      assert.equal(put.code, status.RESOURCE_EXHAUSTED, put.details)
      assert.match(put.details ?? '', /no space left on device/)
      // Still serving: the seeded blob reads back.
      const read = await new Promise<Buffer>((resolve, reject) => {
        const parts: Buffer[] = []
        const call = client.makeServerStreamRequest('/tvix.castore.v1.BlobService/Read', raw, raw, Buffer.from(digestMessage.encode(b3(seed))))
        call.on('data', (m: Buffer) => parts.push(m))
        call.on('error', reject)
        call.on('end', () => resolve(Buffer.concat(parts)))
      })
      // One BlobChunk message: field 1, length, the bytes.
      assert.deepEqual(read, Buffer.from(blobChunk.encode(seed)))
      const failures = daemon.log().split('\n').filter((l) => /failed/.test(l))
      assert.equal(failures.length, 1, daemon.log())
      assert.match(failures[0]!, /BlobService\/Put failed: RESOURCE_EXHAUSTED: no space left on device/)
    } finally {
      client.close()
      assert.equal(await daemon.stop(), 0, daemon.log())
    }
    assert.deepEqual(snapshot(store), seeded)
  })
})

/** Standard output that cannot be written: one error line, or quiet for a reader that left. */
describe('standard output that fails', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-stdout-'))
  const store = path.join(root, 'store')
  let file: string
  let bigPath: string

  before(async () => {
    fs.writeFileSync(path.join(root, 'hello.txt'), 'hello\n')
    fs.writeFileSync(path.join(root, 'big.bin'), randomBytes(8 << 20, 7))
    const r = await runCli(['import', '--store', store, path.join(root, 'hello.txt'), path.join(root, 'big.bin')])
    assert.equal(r.code, 0, r.stderr)
    ;[file, bigPath] = r.stdout.toString().trim().split('\n') as [string, string]
  })
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  const full = (): Array<[string, string[]]> => [
    ['cat', ['cat', file]],
    ['export-nar', ['export-nar', file]],
    ['ls', ['ls', file]],
    ['narinfo', ['narinfo', file]],
    ['import --json', ['import', '--json', path.join(root, 'hello.txt')]],
  ]
  for (const [name] of full()) {
    test(`${name} > /dev/full: one error line, non-zero exit`, async () => {
      const args = full().find(([n]) => n === name)![1]
      const fd = fs.openSync('/dev/full', 'w')
      try {
        const r = await spawnCli([...args, '--store', store], { stdout: fd }).exited
        const json = args.includes('--json')
        assert.notEqual(r.code, 0, r.stderr)
        if (json) {
          assert.equal(JSON.parse(r.stderr).error.message, 'cannot write to standard output: no space left on device')
        } else {
          assertOneError(r, /^error: cannot write to standard output: no space left on device$/)
        }
      } finally {
        fs.closeSync(fd)
      }
    })
  }

  test('a reader that goes away early (| head -c1): quiet exit, as SIGPIPE ends Unix tools', async () => {
    for (const args of [['cat', bigPath], ['export-nar', bigPath]]) {
      const { child, exited } = spawnCli([...args, '--store', store])
      child.stdout!.once('data', () => child.stdout!.destroy())
      const r = await exited
      assert.equal(r.code, 141, r.stderr)
      assert.equal(r.stderr, '')
    }
  })
})
