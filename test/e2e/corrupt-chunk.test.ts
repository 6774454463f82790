import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { PACK_SUFFIX, readManifest } from '../../src/backends/local/pack.js'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { randomBytes } from '../helpers/trees.js'

/**
 * 8 bytes overwritten in the middle of a large blob's pack: `cat` and
 * `export-nar` to a pipe never write a byte of the bad chunk or after it,
 * and fail with one line. What they write of the verified chunks before
 * it: from a local store all of them; through a daemon a prefix of them.
 * The daemon sends them all before its error status, but the gRPC client
 * (grpc-js) drops the messages it has received and not yet handed on
 * (those past its 16-message read buffer) when a non-OK status arrives:
 * a client that reads slower than the daemon sends (a loaded machine, or
 * the Stat call for the chunk list) gets fewer. /tmp experiment: 40
 * messages then an error; a client that pauses 300 ms after the first
 * gets 17 of them.
 */
describe('a corrupt chunk: no byte of it, or after it, is written', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-corrupt-chunk-'))
  const store = path.join(root, 'store')
  const file = path.join(root, 'big.bin')
  // Random bytes: every chunk is stored raw, so pack offsets are blob bytes.
  const data = randomBytes(40 << 20, 41)
  let storePath: string
  /** Offset in the blob of the first byte of the corrupted chunk. */
  let badChunkStart: number
  let daemon: RunningDaemon

  before(async () => {
    fs.writeFileSync(file, data)
    const r = await runCli(['import', '--store', store, file])
    assert.equal(r.code, 0, r.stderr)
    storePath = r.stdout.toString().trim()
    // The pack and its manifest, as stored.
    const shard = path.join(store, 'blobs/b3')
    const packs = fs.readdirSync(shard).flatMap((s) => fs.readdirSync(path.join(shard, s)).filter((n) => n.endsWith(PACK_SUFFIX)).map((n) => path.join(shard, s, n)))
    assert.equal(packs.length, 1)
    const pack = packs[0]!
    const self = path.basename(pack, PACK_SUFFIX)
    const manifest = readManifest(pack, self)!
    assert.ok(manifest.length > 100, `several chunks: ${manifest.length}`)
    const payload = manifest.reduce((n, c) => n + c.stored, 0)
    const mid = Math.floor(payload / 2)
    const i = manifest.findIndex((c) => c.pack === self && c.offset <= mid && mid + 8 <= c.offset + c.stored)
    assert.ok(i > 0)
    assert.equal(manifest[i]!.codec, 0, 'random data is stored raw')
    badChunkStart = manifest.slice(0, i).reduce((n, c) => n + c.size, 0)
    fs.chmodSync(pack, 0o644)
    const fd = fs.openSync(pack, 'r+')
    const bytes = Buffer.alloc(8)
    fs.readSync(fd, bytes, 0, 8, mid)
    for (let k = 0; k < 8; k++) bytes[k]! ^= 0xff
    fs.writeSync(fd, bytes, 0, 8, mid)
    fs.closeSync(fd)
    daemon = await startDaemon(store, `unix:${path.join(root, 'd.sock')}`)
  })
  after(async () => {
    await daemon?.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  const stores = () => [
    ['local', store],
    ['daemon', daemon.url],
  ]

  /** Local: exactly `upTo` bytes; through the daemon: at most that (see above). Either way only the true bytes. */
  const assertPrefix = (which: string, got: Buffer, want: Buffer, upTo: number) => {
    if (which === 'local') assert.equal(got.length, upTo, `${which}: bytes written`)
    else assert.ok(got.length <= upTo, `${which}: ${got.length} bytes written, the bad chunk begins at ${upTo}`)
    assert.ok(got.equals(want.subarray(0, got.length)), `${which}: the bytes written are the true ones`)
  }

  test('cat writes the verified chunks before the bad one, then fails', async () => {
    for (const [which, url] of stores()) {
      const r = await runCli(['cat', '--store', url!, `${storePath}`])
      assert.equal(r.code, 1, `${which}: ${r.stderr}`)
      assertOneErrorLine(r.stderr, /corrupt/)
      assertPrefix(which!, r.stdout, data, badChunkStart)
    }
  })

  test('copy to a local store refuses the blob with one error line, and the target is left as it was', async () => {
    for (const [which, url] of stores()) {
      // A target that already holds something: what it held stays, nothing is added.
      const target = path.join(root, `copy-target-${which}`)
      const small = path.join(root, 'small.txt')
      fs.writeFileSync(small, 'kept\n')
      const kept = (await runCli(['import', '--store', target, small])).stdout.toString().trim()
      const listing = () => fs.readdirSync(target, { recursive: true }).map(String).sort()
      const before = listing()
      const r = await runCli(['copy', '--from', url!, '--to', target, storePath])
      assert.equal(r.code, 1, `${which}: ${r.stderr}`)
      assertOneErrorLine(r.stderr, /corrupt/)
      assert.deepEqual(listing(), before, `${which}: the target's files are the ones it had`)
      assert.equal((await runCli(['cat', '--store', target, kept])).stdout.toString(), 'kept\n')
    }
  })

  test('export-nar to stdout writes the NAR up to the bad chunk, then fails', { skip: nixMissing() }, async () => {
    const nar = NixStore.dump(file)
    // The NAR header Nix writes before the file's contents.
    const header = nar.indexOf(data.subarray(0, 4096))
    assert.ok(header > 0)
    for (const [which, url] of stores()) {
      const r = await runCli(['export-nar', '--store', url!, storePath])
      assert.equal(r.code, 1, `${which}: ${r.stderr}`)
      assertOneErrorLine(r.stderr, /corrupt/)
      assertPrefix(which!, r.stdout, nar, header + badChunkStart)
    }
  })
})
