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
import { directoryDigest, directorySize, type Directory } from '../../src/castore/directory.js'
import { openGrpcStore } from '../../src/backends/grpc/index.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { readAll } from '../../src/castore/blob-service.js'
import { randomBytes } from '../helpers/trees.js'
import { encodeDirectory } from '../../src/castore/proto.js'
import { eventually, field1, rawClient, rawClientStream, watchDaemon, writeAll } from '../helpers/attack.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { tempFiles } from '../helpers/snapshot.js'

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
      assert.ok(await eventually(() => tempFiles(store).length === 0), `temp files left: ${tempFiles(store).join(', ')}`)
      // A cleanly ended stream still commits.
      await remote.directories.putClosure([symlinkDir(0)])
      assert.ok(await remote.directories.get(directoryDigest(symlinkDir(0))))
    } finally {
      const w = await watch.stop()
      t.diagnostic(`aborted Puts x${ROUNDS}: daemon peak RSS ${w.peakRssMiB} MiB; Stat latency median ${w.medianMs} ms, max ${w.maxMs} ms (${w.probes} probes)`)
      await remote.close()
    }
  })

  test('a Put whose source refills one buffer for every piece stores each piece as it was (our client copies a message before it asks for the next); its Read gives them back', async () => {
    const remote = openGrpcStore(daemon.url.replace('grpc+http://', ''), daemon.url, '/nix/store')
    try {
      // More messages than the client keeps in flight, pieces across message boundaries, an odd tail.
      const sizes = [1 << 20, 3 << 19, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1000]
      const want = Buffer.concat(sizes.map((n, i) => randomBytes(n, 40 + i)))
      const reused = Buffer.alloc(Math.max(...sizes))
      async function* refilled() {
        for (const [i, n] of sizes.entries()) {
          randomBytes(n, 40 + i).copy(reused)
          yield reused.subarray(0, n)
        }
      }
      const info = await remote.blobs.put(refilled())
      assert.equal(toHex(info.digest), toHex(b3(want)))
      const got = await readAll((await remote.blobs.open(info.digest))!)
      assert.ok(got.equals(want), 'the blob read back differs from what was put')
    } finally {
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
      assert.ok(await eventually(() => tempFiles(store).length === 0), `temp files left: ${tempFiles(store).join(', ')}`)
    } finally {
      const w = await watch.stop()
      // Node half-closes a stream before resetting it; a reset that arrives after the daemon committed cannot undo it.
      const late = committed().filter((f) => !before.has(f)).length
      t.diagnostic(`cancelled raw Puts x${ROUNDS}: ${late} of ${2 * ROUNDS} committed before their reset arrived; daemon peak RSS ${w.peakRssMiB} MiB; Stat latency median ${w.medianMs} ms, max ${w.maxMs} ms (${w.probes} probes)`)
      client.close()
    }
  })
})

/** A Directory of `entries` files with 200-byte names, distinct per `seed`: about 250 bytes encoded per entry. */
function wideDir(seed: number, entries: number): Directory {
  const files = []
  for (let i = 0; i < entries; i++) {
    const name = Buffer.from(`${String(i).padStart(6, '0')}-${seed}-${'x'.repeat(190)}`)
    files.push({ kind: 'file' as const, name, digest: Buffer.alloc(32, i & 0xff), size: i, executable: false })
  }
  return { directories: [], files, symlinks: [] }
}

/** A root naming each of `children` as a subdirectory. */
function parentOf(children: Directory[]): Directory {
  return {
    directories: children.map((c, i) => ({ kind: 'directory' as const, name: Buffer.from(`d${String(i).padStart(4, '0')}`), digest: directoryDigest(c), size: directorySize(c) })),
    files: [],
    symlinks: [],
  }
}

describe('daemon Directory Put: memory and fairness', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-dirput-'))
  const store = path.join(root, 'store')
  let daemon: RunningDaemon
  /** ~3.9 MiB encoded: just under the limit of one message. */
  const ENTRIES = 16_000
  const RSS_LIMIT_MIB = 300

  before(async () => {
    daemon = await startDaemon(store, `127.0.0.1:${await freePort()}`)
  })
  after(async () => {
    await daemon?.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test('60 distinct 3.9 MiB Directories in one Put: stored, with the daemon\'s memory bounded', async (t) => {
    const COUNT = 60
    // Built before the watch starts: the probe client shares this process's event loop.
    const dirs = Array.from({ length: COUNT }, (_, i) => wideDir(i, ENTRIES))
    const top = parentOf(dirs)
    const client = rawClient(daemon.url)
    const watch = watchDaemon(daemon.proc.pid!, daemon.url)
    let w
    try {
      const put = rawClientStream(client, '/tvix.castore.v1.DirectoryService/Put')
      // Encoded one at a time as they are sent, so the test's own memory stays small.
      function* messages() {
        for (const d of dirs) yield Buffer.from(encodeDirectory(d))
        yield Buffer.from(encodeDirectory(top))
      }
      await writeAll(put.call, messages(), put.result)
      put.call.end()
      const r = await put.result
      assert.equal(r.code, 0, r.details)
      assert.ok(fs.existsSync(path.join(store, 'dirs/b3', toHex(directoryDigest(top)).slice(0, 2), toHex(directoryDigest(top)))))
    } finally {
      w = await watch.stop()
      t.diagnostic(`${COUNT} x 3.9 MiB Directories in one Put: daemon peak RSS ${w.peakRssMiB} MiB; Stat latency median ${w.medianMs} ms, max ${w.maxMs} ms (${w.probes} probes)`)
      client.close()
    }
    assert.ok(w.peakRssMiB <= RSS_LIMIT_MIB, `daemon peak RSS ${w.peakRssMiB} MiB > ${RSS_LIMIT_MIB} MiB`)
  })

  test('one 3.9 MiB Directory sent 200 times is processed once; other calls go on meanwhile', async (t) => {
    const COPIES = 200
    const client = rawClient(daemon.url)
    const watch = watchDaemon(daemon.proc.pid!, daemon.url)
    const bytes = Buffer.from(encodeDirectory(wideDir(1000, ENTRIES)))
    const start = Date.now()
    try {
      const put = rawClientStream(client, '/tvix.castore.v1.DirectoryService/Put')
      await writeAll(put.call, Array.from({ length: COPIES }, () => bytes), put.result)
      put.call.end()
      const r = await put.result
      assert.equal(r.code, 0, r.details)
    } finally {
      const w = await watch.stop()
      t.diagnostic(`${COPIES} identical 3.9 MiB Directories in one Put (${Date.now() - start} ms): daemon peak RSS ${w.peakRssMiB} MiB; Stat latency median ${w.medianMs} ms, max ${w.maxMs} ms (${w.probes} probes)`)
      client.close()
    }
  })

  test('a Put of large Directories cancelled midway: the daemon stops, discards its temp files, commits nothing', async (t) => {
    const dirs = Array.from({ length: 20 }, (_, i) => wideDir(2000 + i, ENTRIES))
    const messages = dirs.map((d) => Buffer.from(encodeDirectory(d)))
    const client = rawClient(daemon.url)
    const watch = watchDaemon(daemon.proc.pid!, daemon.url)
    try {
      const put = rawClientStream(client, '/tvix.castore.v1.DirectoryService/Put')
      await writeAll(put.call, messages, put.result)
      put.call.cancel()
      assert.equal((await put.result).code, 1)
      assert.ok(await eventually(() => tempFiles(store).length === 0), `temp files left: ${tempFiles(store).length}`)
      for (const d of dirs) assert.equal(fs.existsSync(path.join(store, 'dirs/b3', toHex(directoryDigest(d)).slice(0, 2), toHex(directoryDigest(d)))), false)
    } finally {
      const w = await watch.stop()
      t.diagnostic(`cancelled Put of 20 x 3.9 MiB Directories: daemon peak RSS ${w.peakRssMiB} MiB; Stat latency median ${w.medianMs} ms, max ${w.maxMs} ms (${w.probes} probes)`)
      client.close()
    }
  })
})
