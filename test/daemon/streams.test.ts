/**
 * Client streams against a daemon process: only a stream the client ends
 * cleanly commits; one it cancels leaves the store as it was. Each attack
 * prints the daemon's peak RSS and the latency a well-behaved client saw
 * meanwhile (diagnostics, not assertions).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { directoryDigest, type Directory } from '../../src/castore/directory.js'
import { openGrpcStore } from '../../src/backends/grpc/index.js'
import { encodeDirectory } from '../../src/proto/codec.js'
import { eventually, field1, rawClient, rawClientStream, rawUnary, watchDaemon } from '../helpers/attack.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'

const symlinkDir = (i: number): Directory => ({ directories: [], files: [], symlinks: [{ kind: 'symlink', name: Buffer.from(`link${i}`), target: Buffer.from('target') }] })

/** Every file under `dir`, relative. */
function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => path.join(e.parentPath, e.name))
}

describe('daemon client streams: cancel', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-streams-'))
  const store = path.join(root, 'store')
  let daemon: RunningDaemon

  before(async () => {
    daemon = await startDaemon(store, `127.0.0.1:${await freePort()}`)
  })
  after(async () => {
    await daemon?.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  const committed = () => [...listFiles(path.join(store, 'dirs')), ...listFiles(path.join(store, 'blobs'))]

  test('a Put our client aborts midway (its source failed) commits nothing and leaves no temp files', async (t) => {
    const remote = openGrpcStore(daemon.url.replace('grpc+http://', ''), daemon.url, '/nix/store')
    const watch = watchDaemon(daemon.proc.pid!, daemon.url)
    const ROUNDS = 10
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const failing = new Error('source failed')
        async function* blobSource() {
          yield Buffer.alloc(1 << 20, i)
          yield Buffer.alloc(i % 2 ? 1 << 20 : 1000, i + 1)
          // Let the data reach the daemon first (not an assertion).
          await new Promise((r) => setTimeout(r, 50))
          throw failing
        }
        async function* dirSource() {
          yield symlinkDir(i)
          await new Promise((r) => setTimeout(r, 50))
          throw failing
        }
        await assert.rejects(remote.blobs.put(blobSource()), failing)
        await assert.rejects(remote.directories.putClosure(dirSource()), failing)
      }
      // Nothing may appear while the daemon finishes with the aborted calls.
      assert.equal(await eventually(() => committed().length > 0, 1500), false, `committed: ${committed().join(', ')}`)
      assert.ok(await eventually(() => listFiles(path.join(store, 'tmp')).length === 0), `temp files left: ${listFiles(path.join(store, 'tmp')).join(', ')}`)
      // A cleanly ended stream still commits.
      await remote.directories.putClosure([symlinkDir(0)])
      assert.ok(await remote.directories.get(directoryDigest(symlinkDir(0))))
    } finally {
      const w = await watch.stop()
      t.diagnostic(`aborted Puts x${ROUNDS}: daemon peak RSS ${w.peakRssMiB} MiB; Stat latency median ${w.medianMs} ms, max ${w.maxMs} ms (${w.probes} probes)`)
      await remote.close()
    }
  })

  test('a grpc-js client cancelling Puts mid-stream: the daemon stops them and stays responsive', async (t) => {
    const client = rawClient(daemon.url)
    const before = new Set(committed())
    const watch = watchDaemon(daemon.proc.pid!, daemon.url)
    const ROUNDS = 10
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const d = rawClientStream(client, '/tvix.castore.v1.DirectoryService/Put')
        d.call.write(Buffer.from(encodeDirectory(symlinkDir(100 + i))))
        const b = rawClientStream(client, '/tvix.castore.v1.BlobService/Put')
        b.call.write(field1(Buffer.alloc(1 << 20, 100 + i)))
        b.call.write(field1(Buffer.alloc(1 << 20, 101 + i)))
        await new Promise((r) => setTimeout(r, 50))
        d.call.cancel()
        b.call.cancel()
        assert.equal((await d.result).code, 1)
        assert.equal((await b.result).code, 1)
      }
      assert.ok(await eventually(() => listFiles(path.join(store, 'tmp')).length === 0), `temp files left: ${listFiles(path.join(store, 'tmp')).join(', ')}`)
    } finally {
      const w = await watch.stop()
      // Node half-closes a stream before resetting it; a reset that arrives after the daemon committed cannot undo it.
      const late = committed().filter((f) => !before.has(f)).length
      t.diagnostic(`cancelled raw Puts x${ROUNDS}: ${late} of ${2 * ROUNDS} committed before their reset arrived; daemon peak RSS ${w.peakRssMiB} MiB; Stat latency median ${w.medianMs} ms, max ${w.maxMs} ms (${w.probes} probes)`)
      client.close()
    }
  })
})
