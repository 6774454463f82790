/**
 * A second thread that reads and BLAKE3-checks half of a span of a large
 * blob while the main thread reads and checks the other half.
 *
 * Exporting a large file is one sequential read plus a BLAKE3 of every
 * byte (no byte may leave before its chunk is checked), and BLAKE3 alone
 * costs more CPU than `nix-store --dump` spends on the whole file. Both
 * halves of a span are read and hashed at once, so on two free cores a
 * span costs about half: measured on a 512 MiB file, see the commit.
 *
 * The worker shares memory with the main thread (SharedArrayBuffer) and
 * is driven with Atomics, synchronously: a span is split, checked and
 * joined within one synchronous step of the reader, so no two readers
 * ever use it at once, and nothing waits on the event loop. Its buffers
 * are leased to readers (one per reader while it reads a blob); a reader
 * without one, or a span the worker cannot help with, is checked on the
 * main thread alone, as before. Failures are the main thread's: a read
 * the worker could not complete is done again on the main thread, which
 * raises the error with its usual message, and a chunk that does not
 * match is reported by index for the caller to name.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { b3Matches, blake3ModulePath } from './digest.js'

/**
 * Bytes of each shared buffer: a reader's span at most. Each span costs a
 * wake-up of each thread (a futex call across CPUs, tens of µs in a VM):
 * export-nar of 2 GiB took 1.33 s of CPU with 1 MiB spans, 1.24 with 2 MiB,
 * 1.17 with 4 MiB, and no less with 8 or 16 (interleaved, medians of 7).
 */
export const SHARED_SPAN = 4 << 20
/** Shared buffers, so readers at once with help (a daemon serving many may have more readers; those check alone). */
const BUFFERS = 4
/** Chunks the worker checks per job at most (content-defined chunks are ≥ 16 KiB but a blob's last). */
const MAX_CHUNKS = 256

// Control words (Int32Array over shared memory).
const STATE = 0
const READY = 1
const BUF = 2
const FD = 3
const POS_LO = 4
const POS_HI = 5
const OFF = 6
const LEN = 7
const COUNT = 8
const GOT = 9
const BAD = 10
const WORDS = 11
/** How often a wait for the worker looks whether it has ended meanwhile (a job takes a millisecond or so). */
const LIVENESS_MS = 1000
const IDLE = 0
const JOB = 1
const DONE = 2

/** The worker: waits for a job, reads its half into the shared buffer, checks each chunk, says how it went. */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads')
const fs = require('node:fs')
const { Blake3Hasher } = require(workerData.binding)
// One hasher and hex digests, as b3Matches (digest.ts): a Buffer from the binding costs more than hashing a chunk.
const hasher = new Blake3Hasher()
const ctrl = new Int32Array(workerData.ctrl)
const sizes = new Int32Array(workerData.sizes)
const digests = Buffer.from(workerData.digests)
const bufs = workerData.buffers.map((b) => Buffer.from(b))
// Ending for any reason, it says so, and hands back a job it had: the main thread then does it.
process.on('exit', () => {
  Atomics.store(ctrl, ${READY}, 0)
  ctrl[${GOT}] = -1
  Atomics.store(ctrl, ${STATE}, ${DONE})
  Atomics.notify(ctrl, ${STATE})
})
Atomics.store(ctrl, ${READY}, 1)
for (;;) {
  // Until a job is posted (after one, the state stays DONE until the main thread has taken the result).
  for (let s; (s = Atomics.load(ctrl, ${STATE})) !== ${JOB}; ) Atomics.wait(ctrl, ${STATE}, s)
  let got = -1
  let bad = -1
  try {
    const buf = bufs[ctrl[${BUF}]]
    const pos = (ctrl[${POS_HI}] >>> 0) * 0x100000000 + (ctrl[${POS_LO}] >>> 0)
    const off = ctrl[${OFF}], len = ctrl[${LEN}]
    got = 0
    for (let n = 1; got < len && n > 0; got += n) n = fs.readSync(ctrl[${FD}], buf, off + got, len - got, pos + got)
    for (let i = 0, at = off; got === len && i < ctrl[${COUNT}]; at += sizes[i++]) {
      hasher.reset()
      hasher.update(buf.subarray(at, at + sizes[i]))
      if (hasher.digest('hex') !== digests.toString('hex', i * 32, i * 32 + 32)) {
        bad = i
        break
      }
    }
  } catch {
    // Whatever failed, the main thread does this half itself.
    got = -1
  }
  ctrl[${GOT}] = got
  ctrl[${BAD}] = bad
  Atomics.store(ctrl, ${STATE}, ${DONE})
  Atomics.notify(ctrl, ${STATE})
}
`

/** A chunk of a span: its bytes follow the previous chunk's. */
export interface SpanChunk {
  size: number
  digest: Uint8Array
}

export interface SpanResult {
  got: number
  bad: number
  shared: boolean
}

/** A shared buffer held by one reader until release(). */
export interface Lease {
  buf: Buffer
  /**
   * Reads `len` bytes of `fd` at `pos` into buf[0, len) and checks `chunks`
   * (back to back from 0, `len` bytes in all): `got` is the bytes read
   * (fewer only at the file's end, as `readOwn` says), `bad` the index of
   * the first chunk that does not match (-1: none; only when all was read).
   * `readOwn(into, pos)` is the main thread's read, which throws on failure.
   * `shared`: the worker read and checked a part (it had started, and the
   * span has more than one chunk).
   */
  readChecked(fd: number, pos: number, len: number, chunks: readonly SpanChunk[], readOwn: (into: Buffer, pos: number) => number): SpanResult
  release(): void
}

class CheckThread {
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(WORDS * 4))
  private readonly sizes = new Int32Array(new SharedArrayBuffer(MAX_CHUNKS * 4))
  private readonly digests = Buffer.from(new SharedArrayBuffer(MAX_CHUNKS * 32))
  private readonly buffers: Buffer[] = []
  private readonly free: number[] = []

  constructor() {
    const shared: SharedArrayBuffer[] = []
    for (let i = 0; i < BUFFERS; i++) {
      const sab = new SharedArrayBuffer(SHARED_SPAN)
      shared.push(sab)
      this.buffers.push(Buffer.from(sab))
      this.free.push(i)
    }
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { binding: blake3ModulePath(), ctrl: this.ctrl.buffer, sizes: this.sizes.buffer, digests: this.digests.buffer, buffers: shared },
    })
    // It never keeps the process alive; if it fails to start, readers go on alone (READY stays 0).
    worker.unref()
    worker.on('error', () => {})
  }

  lease(): Lease | undefined {
    const id = this.free.pop()
    if (id === undefined) return undefined
    let held = true
    return {
      buf: this.buffers[id]!,
      readChecked: (fd, pos, len, chunks, readOwn) => this.readChecked(id, fd, pos, len, chunks, readOwn),
      release: () => {
        if (held) this.free.push(id)
        held = false
      },
    }
  }

  private readChecked(id: number, fd: number, pos: number, len: number, chunks: readonly SpanChunk[], readOwn: (into: Buffer, pos: number) => number): SpanResult {
    const buf = this.buffers[id]!.subarray(0, len)
    // The worker takes the chunks from the middle on: `split` is the first of them, `mid` where its bytes start.
    let split = chunks.length
    let mid = len
    if (Atomics.load(this.ctrl, READY) === 1 && chunks.length > 1) {
      let at = 0
      for (let i = 0; i < chunks.length; at += chunks[i++]!.size) {
        if (at >= len / 2 && chunks.length - i <= MAX_CHUNKS) {
          split = i
          mid = at
          break
        }
      }
    }
    if (split < chunks.length) this.post(id, fd, pos, mid, len - mid, chunks.slice(split))
    let got: number
    let bad = -1
    try {
      got = readOwn(buf.subarray(0, mid), pos)
      if (got === mid) bad = checkAll(buf.subarray(0, mid), chunks.slice(0, split))
    } finally {
      // The worker writes into buf: it must be done before the caller sees it.
      if (split < chunks.length) this.wait()
    }
    if (split === chunks.length || got < mid) return { got, bad, shared: split < chunks.length }
    const theirs = { got: this.ctrl[GOT]!, bad: this.ctrl[BAD]! }
    if (theirs.got !== len - mid) {
      // Failed or short there: read again here, where a failure raises its own error.
      theirs.got = readOwn(buf.subarray(mid), pos + mid)
      theirs.bad = theirs.got === len - mid ? checkAll(buf.subarray(mid), chunks.slice(split)) : -1
    }
    return { got: mid + theirs.got, bad: bad >= 0 ? bad : theirs.bad >= 0 ? split + theirs.bad : -1, shared: true }
  }

  private post(id: number, fd: number, pos: number, off: number, len: number, chunks: readonly SpanChunk[]): void {
    const c = this.ctrl
    for (const [i, ch] of chunks.entries()) {
      this.sizes[i] = ch.size
      this.digests.set(ch.digest, i * 32)
    }
    c[BUF] = id
    c[FD] = fd
    c[POS_LO] = (pos + off) >>> 0
    c[POS_HI] = Math.floor((pos + off) / 0x100000000)
    c[OFF] = off
    c[LEN] = len
    c[COUNT] = chunks.length
    Atomics.store(c, STATE, JOB)
    Atomics.notify(c, STATE)
  }

  /** Until the worker is done with the job. */
  private wait(): void {
    const c = this.ctrl
    while (Atomics.load(c, STATE) === JOB) {
      Atomics.wait(c, STATE, JOB, LIVENESS_MS)
      // It ended (saying so on its way out) before this job was posted: nobody will do its half but us.
      if (Atomics.load(c, STATE) === JOB && Atomics.load(c, READY) === 0) {
        c[GOT] = -1
        break
      }
    }
    Atomics.store(c, STATE, IDLE)
  }
}

/** The index of the first chunk of `chunks` (back to back in `buf`) whose BLAKE3 is not its digest, or -1. */
export function checkAll(buf: Uint8Array, chunks: readonly SpanChunk[]): number {
  let at = 0
  for (const [i, c] of chunks.entries()) {
    if (!b3Matches(buf.subarray(at, at + c.size), c.digest)) return i
    at += c.size
  }
  return -1
}

let thread: CheckThread | undefined | null
/**
 * A shared buffer of the check thread (started on first use), or undefined
 * on one core or with every buffer leased: the caller then reads into its
 * own buffer and checks alone.
 */
export function leaseCheckBuffer(): Lease | undefined {
  if (thread === undefined) thread = availableParallelism() > 1 ? new CheckThread() : null
  return thread?.lease()
}
