/**
 * Blob Reads on lean HTTP/2 calls (backends/grpc/h2-stream.ts) and trees
 * read ahead through a real daemon: the NAR is Nix's, byte for byte
 * (read-ahead's failures and bounds: test/castore/read-ahead.test.ts).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { MessageReader } from '../../src/backends/grpc/h2-stream.js'
import { runCli } from '../helpers/cli.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

/** Messages framed as gRPC sends them (flag byte, 4-byte length, message). */
function framed(messages: Buffer[]): Buffer {
  return Buffer.concat(messages.flatMap((m) => [Buffer.from([0, m.length >>> 24, (m.length >>> 16) & 255, (m.length >>> 8) & 255, m.length & 255]), m]))
}

/** The messages `piece` completes, each copied out of where the reader handed it. */
function messagesOf(r: MessageReader, piece: Buffer): Buffer[] {
  const got: Buffer[] = []
  r.push(piece, (b, start, end) => void got.push(Buffer.from(b.subarray(start, end))))
  return got
}

test('MessageReader gives the same messages however the DATA pieces are cut', () => {
  const messages = [randomBytes(100, 1), Buffer.alloc(0), randomBytes(3, 2), randomBytes(70_000, 3), randomBytes(1, 4)]
  const wire = framed(messages)
  // Every cut into two pieces, and cuts into pieces of every small size.
  const cuts: Buffer[][] = []
  for (let at = 0; at <= wire.length; at += at < 200 ? 1 : 997) cuts.push([wire.subarray(0, at), wire.subarray(at)])
  for (const size of [1, 2, 3, 4, 5, 6, 7, 16384]) {
    const pieces = []
    for (let i = 0; i < wire.length; i += size) pieces.push(wire.subarray(i, i + size))
    cuts.push(pieces)
  }
  for (const pieces of cuts) {
    const r = new MessageReader(1 << 20)
    const got = pieces.flatMap((p) => messagesOf(r, p))
    r.end()
    assert.deepEqual(got.map((m) => Buffer.from(m).toString('hex')), messages.map((m) => m.toString('hex')))
  }
  const cut = new MessageReader(1 << 20)
  messagesOf(cut, wire.subarray(0, wire.length - 1))
  assert.throws(() => cut.end(), /ended inside a message/)
  assert.throws(() => messagesOf(new MessageReader(10), framed([randomBytes(11, 5)])), /larger than max/)
})

describe('export-nar through a daemon, read ahead', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lean-reads-'))
  const store = path.join(root, 'store')
  let daemon: RunningDaemon
  let dir: string
  let storePath: string

  before(async () => {
    dir = makeTree(root, 'wide', 'wide-tree')
    fs.mkdirSync(path.join(dir, 'sub'))
    fs.writeFileSync(path.join(dir, 'sub/big.bin'), randomBytes(5 << 20, 9))
    fs.writeFileSync(path.join(dir, 'sub/one-mib-and-one'), randomBytes((1 << 20) + 1, 10))
    fs.symlinkSync('big.bin', path.join(dir, 'sub/link'))
    const r = await runCli(['import', '--store', store, dir])
    assert.equal(r.code, 0, r.stderr)
    storePath = r.stdout.toString().trim()
    daemon = await startDaemon(store, `unix:${path.join(root, 'd.sock')}`)
  })
  after(async () => {
    await daemon?.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test('the NAR is nix-store --dump\'s, byte for byte', { skip: nixMissing() }, async () => {
    const r = await runCli(['export-nar', '--store', daemon.url, storePath])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(r.stdout.equals(NixStore.dump(dir)), 'NAR differs from nix-store --dump')
  })
})

