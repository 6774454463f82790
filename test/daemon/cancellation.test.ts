/**
 * Cancellation (CallOptions.signal) end to end: a client that aborts its
 * signal cancels its gRPC call, and the daemon stops the store work of a
 * cancelled call and releases its files. Observed from outside, never by
 * sleeping: the daemon's open file descriptors into the store's blobs
 * (/proc/PID/fd) and the bytes it has read (/proc/PID/io `rchar`).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test, type TestContext } from 'node:test'
import { openGrpcStore, RpcClient } from '../../src/backends/grpc/index.js'
import { openStore } from '../../src/backends/open-store.js'
import type { B3Digest } from '../../src/castore/digest.js'
import { type Directory, directoryDigest, directorySize } from '../../src/castore/directory.js'
import type { Node } from '../../src/castore/node.js'
import type { Store } from '../../src/store/store.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { blockedFor, failIfStalled } from '../helpers/spawn.js'
import { randomBytes } from '../helpers/trees.js'

/** Far more than a client's flow-control window (16 MiB) and the socket buffers: a Read cut short reads a fraction of it. */
const BLOB_BYTES = 96 << 20
/** Entries naming that blob in one Directory: a NAR of 6 GiB to render, stored in 96 MiB. */
const ENTRIES = 64
/** A daemon that used no CPU for this long while we wait for it to act will not act. */
const IDLE_MS = 20_000

/** Open file descriptors of `pid` into `dir`. */
function fdsInto(pid: number | 'self', dir: string): number {
  let n = 0
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(dir + path.sep)) n++
    } catch {
      // Closed while we looked.
    }
  }
  return n
}

/** Bytes `pid` has read by read(2) and pread(2), files and sockets alike. */
function rchar(pid: number): number {
  return Number(/^rchar: (\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))![1])
}

/** Waits until `cond` holds; fails if the daemon used no CPU for IDLE_MS meanwhile (it would never get there). */
async function daemonReaches(pid: number, what: string, cond: () => boolean): Promise<void> {
  let stop = false
  const reached = (async () => {
    while (!stop && !cond()) await sleep(5)
  })()
  const stuck = await blockedFor(pid, IDLE_MS, reached)
  stop = true
  if (stuck) throw new Error(`the daemon sat idle for ${IDLE_MS / 1000} s and never ${what}`)
}

describe('cancelling calls to a daemon', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cancel-'))
  const store = path.join(root, 'store')
  const blobsDir = path.join(store, 'blobs')
  let daemon: RunningDaemon
  let remote: Store
  let pid: number
  let blob: B3Digest
  let manyCopies: Node

  before(async () => {
    daemon = await startDaemon(store, `127.0.0.1:${await freePort()}`)
    pid = daemon.proc.pid!
    remote = openGrpcStore(daemon.url.replace('grpc+http://', ''), daemon.url, '/nix/store')
    ;({ digest: blob } = await remote.blobs.put(randomBytes(BLOB_BYTES, 12)))
    const dir: Directory = { directories: [], symlinks: [], files: [] }
    for (let i = 0; i < ENTRIES; i++) dir.files.push({ kind: 'file', name: Buffer.from(`f${String(i).padStart(2, '0')}`), digest: blob, size: BLOB_BYTES, executable: false })
    const digest = await remote.directories.putClosure([dir])
    manyCopies = { kind: 'directory', name: new Uint8Array(0), digest, size: directorySize(dir) }
    assert.deepEqual(digest, directoryDigest(dir))
  })
  after(async () => {
    await remote?.close()
    await daemon?.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test('aborting a blob Read cancels the call: the daemon closes the blob at once and reads no further; the stream fails', failIfStalled(async (t: TestContext) => {
    const baseline = fdsInto(pid, blobsDir)
    const readBefore = rchar(pid)
    const ac = new AbortController()
    const data = await remote.blobs.open(blob, { signal: ac.signal })
    assert.ok(data)
    const it = data[Symbol.asyncIterator]()
    assert.equal((await it.next()).done, false)
    // Mid-read: the client reads no more, so the daemon waits with the blob open.
    await daemonReaches(pid, 'opened the blob', () => fdsInto(pid, blobsDir) > baseline)

    const t0 = performance.now()
    ac.abort()
    // Not a read or return() from us: the abort alone reaches the daemon.
    await daemonReaches(pid, 'closed the blob of the cancelled Read', () => fdsInto(pid, blobsDir) === baseline)
    const released = performance.now() - t0
    const read = rchar(pid) - readBefore
    await assert.rejects(it.next(), { name: 'AbortError' })
    t.diagnostic(`Read aborted: daemon released the blob after ${released.toFixed(1)} ms, having read ${(read / 2 ** 20).toFixed(1)} MiB of ${BLOB_BYTES / 2 ** 20}`)
    assert.ok(read < BLOB_BYTES / 2, `the daemon read ${read} bytes of a ${BLOB_BYTES}-byte blob it stopped serving`)
    // Nothing of the cancelled Read goes on: three more calls later, the daemon read only their few bytes.
    const settled = rchar(pid)
    for (let i = 0; i < 3; i++) assert.equal(await remote.blobs.has(blob), true)
    assert.ok(rchar(pid) - settled < 1 << 20, `the daemon read ${rchar(pid) - settled} bytes after the Read was cancelled`)
  }))

  test('aborting a CalculateNAR stops the render: the daemon closes the blob and reads no further', failIfStalled(async (t: TestContext) => {
    const rpc = new RpcClient(daemon.url.replace('grpc+http://', ''), daemon.url)
    try {
      const baseline = fdsInto(pid, blobsDir)
      const readBefore = rchar(pid)
      const ac = new AbortController()
      const call = rpc.unary('tvix.store.v1.PathInfoService', 'CalculateNAR', manyCopies, { signal: ac.signal })
      call.catch(() => {})
      // The render reads one entry's blob after another: abort while one is open and being read
      // (not while the pack's manifest is looked up, a sync open-read-close a poll may also catch).
      await daemonReaches(pid, 'began rendering', () => fdsInto(pid, blobsDir) > baseline && rchar(pid) - readBefore > 1 << 20)
      ac.abort()
      await assert.rejects(call, { name: 'AbortError' })
      await daemonReaches(pid, 'closed the blob of the cancelled render', () => fdsInto(pid, blobsDir) === baseline)
      const read = rchar(pid) - readBefore
      // A render still going would read megabytes per turn of the daemon's event loop, which each call below needs.
      const settled = rchar(pid)
      for (let i = 0; i < 3; i++) assert.equal(await remote.blobs.has(blob), true)
      const after = rchar(pid) - settled
      t.diagnostic(`CalculateNAR aborted: daemon read ${(read / 2 ** 20).toFixed(1)} MiB of a ${(ENTRIES * BLOB_BYTES) / 2 ** 30} GiB NAR, ${after} bytes after`)
      assert.ok(read < (ENTRIES * BLOB_BYTES) / 2, `the daemon read ${read} bytes for a render it was told to stop`)
      assert.ok(after < 1 << 20, `the daemon read ${after} bytes after the render was cancelled`)
    } finally {
      rpc.close()
    }
  }))

  test('a signal already aborted fails a call before it is made', async () => {
    const reason = new Error('gave up')
    await assert.rejects(remote.blobs.open(blob, { signal: AbortSignal.abort(reason) }), (e) => e === reason)
    await assert.rejects(remote.pathInfos.get(Buffer.alloc(20), { signal: AbortSignal.abort(reason) }), (e) => e === reason)
    await assert.rejects(remote.blobs.put(Buffer.from('x'), { signal: AbortSignal.abort(reason) }), (e) => e === reason)
  })
})

describe('cancelling a local blob read', () => {
  test('aborting the signal closes the blob file though nobody reads on or returns the stream', failIfStalled(async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cancel-local-'))
    const store = await openStore({ url: path.join(root, 'store') })
    try {
      const { digest } = await store.blobs.put(randomBytes(8 << 20, 13))
      const blobsDir = path.join(root, 'store', 'blobs')
      const baseline = fdsInto('self', blobsDir)
      const ac = new AbortController()
      const it = (await store.blobs.open(digest, { signal: ac.signal }))![Symbol.asyncIterator]()
      assert.equal((await it.next()).done, false)
      assert.ok(fdsInto('self', blobsDir) > baseline, 'the blob is open mid-read')
      ac.abort()
      // The close is a few turns of our own event loop away; the bound only ends a failure.
      const until = Date.now() + 60_000
      while (fdsInto('self', blobsDir) > baseline && Date.now() < until) await sleep(1)
      assert.equal(fdsInto('self', blobsDir), baseline, 'the aborted read closed its file')
      await assert.rejects(it.next(), { name: 'AbortError' })
    } finally {
      await store.close()
      fs.rmSync(root, { recursive: true, force: true })
    }
  }))
})
