/**
 * A second thread that reads and BLAKE3-checks spans of a large blob ahead
 * of the main thread, while the main thread reads and checks others and
 * hands the checked ones on.
 *
 * Exporting a large file is one sequential read plus a BLAKE3 of every
 * byte (no byte may leave before its chunk is checked), and BLAKE3 alone
 * costs more CPU than `nix-store --dump` spends on the whole file. So a
 * reader plans a few spans ahead into slots of shared memory
 * (SharedArrayBuffer); each planned span is taken by whichever thread
 * comes to it first, read into its slot and checked there. The main
 * thread hands the spans on in order: it takes the oldest itself if it is
 * still untaken, else another untaken one while the worker finishes the
 * oldest, and waits only when every planned span is taken. Neither thread
 * waits for the other span by span (the two used to split each span in
 * halves and meet at its end: a wake-up of each per span, the worker idle
 * while the main thread wrote, and the main thread stalled whenever the
 * worker was descheduled on a busy machine).
 *
 * Everything is driven with Atomics, synchronously: nothing waits on the
 * event loop. A reader holds a lease on a set of slots while it reads a
 * blob; a reader without one (all leased) checks alone, as on one core.
 * Failures are the main thread's: a span the worker could not read is read
 * again on the main thread, which raises the error with its usual message,
 * and a chunk that does not match is reported by index for the caller to
 * name. A worker that has not started yet, or has ended, takes no span:
 * the main thread does them all.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { b3Matches, blake3ModulePath } from './digest.js'

/**
 * Bytes of each slot: a span at most. Larger spans mean fewer handovers and
 * syscalls; 4 MiB spans measured no slower than larger ones when the two
 * threads split each span (export-nar of 2 GiB, interleaved, medians of 7).
 */
export const SHARED_SPAN = 4 << 20
/** Chunks in a span at most (content-defined chunks are ≥ 16 KiB but a blob's last): a span is grouped to fit. */
export const SHARED_SPAN_CHUNKS = 256
/** Slots per lease: spans planned ahead of the one being handed on. */
const SLOTS_PER_LEASE = 4
/** Readers at once with help (a daemon serving many may have more readers; those check alone). */
const LEASES = 2
const SLOTS = SLOTS_PER_LEASE * LEASES

// Control words (Int32Array over shared memory): a header, then SLOT_WORDS per slot.
const READY = 0
/** Bumped whenever a span is planned: what an idle worker waits on. */
const PLANS = 1
const HEADER = 2
const STATE = 0
const SEQ = 1
const FD = 2
const POS_LO = 3
const POS_HI = 4
const LEN = 5
const COUNT = 6
const GOT = 7
const BAD = 8
/** 1: the worker read and checked the span. */
const BY_WORKER = 9
const SLOT_WORDS = 10
/** How often a wait for the worker looks whether it has ended meanwhile (a span takes a millisecond or so). */
const LIVENESS_MS = 1000
// Slot states.
const FREE = 0
const PLANNED = 1
const MAIN = 2
const WORKER = 3
const DONE = 4

/** The worker: takes the oldest planned span, reads it into its slot, checks each chunk, says how it went; waits when none is planned. */
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
let mine = -1
function finish(slot, got, bad) {
  const w = ${HEADER} + slot * ${SLOT_WORDS}
  ctrl[w + ${GOT}] = got
  ctrl[w + ${BAD}] = bad
  ctrl[w + ${BY_WORKER}] = 1
  Atomics.store(ctrl, w + ${STATE}, ${DONE})
  Atomics.notify(ctrl, w + ${STATE})
}
// Ending for any reason, it says so, and hands back a span it had, undone: the main thread then reads it.
process.on('exit', () => {
  Atomics.store(ctrl, ${READY}, 0)
  if (mine >= 0) finish(mine, -1, -1)
})
Atomics.store(ctrl, ${READY}, 1)
for (;;) {
  const plans = Atomics.load(ctrl, ${PLANS})
  // The oldest planned span (sequence numbers may wrap: compared by difference).
  let slot = -1
  let seq = 0
  for (let s = 0; s < ${SLOTS}; s++) {
    const w = ${HEADER} + s * ${SLOT_WORDS}
    if (Atomics.load(ctrl, w + ${STATE}) === ${PLANNED} && (slot < 0 || ctrl[w + ${SEQ}] - seq < 0)) {
      slot = s
      seq = ctrl[w + ${SEQ}]
    }
  }
  if (slot < 0) {
    Atomics.wait(ctrl, ${PLANS}, plans)
    continue
  }
  const w = ${HEADER} + slot * ${SLOT_WORDS}
  // The main thread may have taken it meanwhile.
  if (Atomics.compareExchange(ctrl, w + ${STATE}, ${PLANNED}, ${WORKER}) !== ${PLANNED}) continue
  mine = slot
  let got = -1
  let bad = -1
  try {
    const buf = bufs[slot]
    const fd = ctrl[w + ${FD}]
    const pos = (ctrl[w + ${POS_HI}] >>> 0) * 0x100000000 + (ctrl[w + ${POS_LO}] >>> 0)
    const len = ctrl[w + ${LEN}]
    got = 0
    for (let n = 1; got < len && n > 0; got += n) n = fs.readSync(fd, buf, got, len - got, pos + got)
    const first = slot * ${SHARED_SPAN_CHUNKS}
    for (let i = 0, at = 0; got === len && i < ctrl[w + ${COUNT}]; at += sizes[first + i++]) {
      hasher.reset()
      hasher.update(buf.subarray(at, at + sizes[first + i]))
      if (hasher.digest('hex') !== digests.toString('hex', (first + i) * 32, (first + i) * 32 + 32)) {
        bad = i
        break
      }
    }
  } catch {
    // Whatever failed, the main thread reads this span itself.
    got = -1
  }
  mine = -1
  finish(slot, got, bad)
}
`

/** A chunk of a span: its bytes follow the previous chunk's. */
export interface SpanChunk {
  size: number
  digest: Uint8Array
}

/**
 * A span read and checked: its bytes `buf`, `got` of them read (fewer only
 * at the file's end, as its `readOwn` says), `bad` the index of the first
 * chunk that does not match (-1: none; only when all was read);
 * `byWorker`: the worker read and checked it.
 */
export interface SpanResult {
  buf: Buffer
  got: number
  bad: number
  byWorker: boolean
}

/** The main thread's read of a span's bytes at `pos` into `into`: the bytes read, fewer only at the end; throws on failure. */
export type ReadOwn = (into: Buffer, pos: number) => number

/**
 * Slots of the check thread held by one reader until release(). Spans are
 * planned in file order and come out of next() in the same order.
 */
export interface Lease {
  /**
   * Plans `len` bytes of `fd` at `pos` holding `chunks` (back to back, `len`
   * bytes in all, at most SHARED_SPAN_CHUNKS of them, len ≤ SHARED_SPAN):
   * false if every slot is planned already. `fd` must stay open until the
   * span has come out of next() or the lease is released.
   */
  plan(fd: number, pos: number, len: number, chunks: readonly SpanChunk[], readOwn: ReadOwn): boolean
  /** Spans planned and not yet handed on by next(). */
  readonly planned: number
  /**
   * The oldest planned span, read and checked. Its buffer is the slot's:
   * valid until the next call of next() or release() (its slot is then
   * planned again). Throws what its `readOwn` throws.
   */
  next(): SpanResult
  /** Drops the spans planned and not handed on, once the worker is done with any it has: then the fds may be closed. */
  release(): void
}

class CheckThread {
  private readonly ctrl = new Int32Array(new SharedArrayBuffer((HEADER + SLOTS * SLOT_WORDS) * 4))
  private readonly sizes = new Int32Array(new SharedArrayBuffer(SLOTS * SHARED_SPAN_CHUNKS * 4))
  private readonly digests = Buffer.from(new SharedArrayBuffer(SLOTS * SHARED_SPAN_CHUNKS * 32))
  private readonly buffers: Buffer[] = []
  /** Leases not held, each its slot numbers. */
  private readonly free: number[][] = []
  private seq = 0

  constructor() {
    const shared: SharedArrayBuffer[] = []
    for (let i = 0; i < SLOTS; i++) {
      const sab = new SharedArrayBuffer(SHARED_SPAN)
      shared.push(sab)
      this.buffers.push(Buffer.from(sab))
    }
    for (let l = 0; l < LEASES; l++) this.free.push(Array.from({ length: SLOTS_PER_LEASE }, (_, i) => l * SLOTS_PER_LEASE + i))
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { binding: blake3ModulePath(), ctrl: this.ctrl.buffer, sizes: this.sizes.buffer, digests: this.digests.buffer, buffers: shared },
    })
    // It never keeps the process alive; if it fails to start, it takes no span (the main thread does them all).
    worker.unref()
    worker.on('error', () => {})
  }

  lease(): Lease | undefined {
    const slots = this.free.pop()
    if (!slots) return undefined
    return new SlotLease(this, slots)
  }

  giveBack(slots: number[]): void {
    this.free.push(slots)
  }

  /** Index of a slot's control word `word`. */
  word(slot: number, word: number): number {
    return HEADER + slot * SLOT_WORDS + word
  }

  state(slot: number): number {
    return Atomics.load(this.ctrl, this.word(slot, STATE))
  }

  /** Moves a slot from state `from` to `to` if it is in `from`: whether it was. */
  take(slot: number, from: number, to: number): boolean {
    return Atomics.compareExchange(this.ctrl, this.word(slot, STATE), from, to) === from
  }

  plan(slot: number, fd: number, pos: number, len: number, chunks: readonly SpanChunk[]): void {
    const c = this.ctrl
    const first = slot * SHARED_SPAN_CHUNKS
    for (let i = 0; i < chunks.length; i++) {
      this.sizes[first + i] = chunks[i]!.size
      this.digests.set(chunks[i]!.digest, (first + i) * 32)
    }
    c[this.word(slot, SEQ)] = this.seq = (this.seq + 1) | 0
    c[this.word(slot, FD)] = fd
    c[this.word(slot, POS_LO)] = pos >>> 0
    c[this.word(slot, POS_HI)] = Math.floor(pos / 0x100000000)
    c[this.word(slot, LEN)] = len
    c[this.word(slot, COUNT)] = chunks.length
    Atomics.store(c, this.word(slot, STATE), PLANNED)
    Atomics.add(c, PLANS, 1)
    Atomics.notify(c, PLANS)
  }

  /** Records a span's outcome (the main thread read it, or gives up on the worker's). */
  finish(slot: number, got: number, bad: number): void {
    this.ctrl[this.word(slot, GOT)] = got
    this.ctrl[this.word(slot, BAD)] = bad
    this.ctrl[this.word(slot, BY_WORKER)] = 0
    Atomics.store(this.ctrl, this.word(slot, STATE), DONE)
  }

  outcome(slot: number): { got: number; bad: number; byWorker: boolean } {
    return { got: this.ctrl[this.word(slot, GOT)]!, bad: this.ctrl[this.word(slot, BAD)]!, byWorker: this.ctrl[this.word(slot, BY_WORKER)] === 1 }
  }

  /** Until the worker is done with a slot it took; one it can no longer finish (it ended) is marked failed. */
  waitWorker(slot: number): void {
    const at = this.word(slot, STATE)
    while (Atomics.load(this.ctrl, at) === WORKER) {
      Atomics.wait(this.ctrl, at, WORKER, LIVENESS_MS)
      // It ended without handing it back (its exit handler does that): nobody will finish it but us.
      if (Atomics.load(this.ctrl, READY) === 0 && this.take(slot, WORKER, DONE)) {
        this.ctrl[this.word(slot, GOT)] = -1
        this.ctrl[this.word(slot, BY_WORKER)] = 0
      }
    }
  }

  buffer(slot: number): Buffer {
    return this.buffers[slot]!
  }
}

class SlotLease implements Lease {
  /** Ring position of the oldest planned span, and how many are planned. */
  private head = 0
  planned = 0
  /** Per ring position: the planned span's readOwn and length. */
  private readonly own: Array<{ readOwn: ReadOwn; pos: number; len: number; chunks: readonly SpanChunk[] } | undefined>
  /** The slot handed out by the last next(), planned again on the next call. */
  private out = -1
  private held = true

  constructor(
    private readonly thread: CheckThread,
    private readonly slots: number[],
  ) {
    this.own = slots.map(() => undefined)
  }

  plan(fd: number, pos: number, len: number, chunks: readonly SpanChunk[], readOwn: ReadOwn): boolean {
    this.recycle()
    if (this.planned === this.slots.length) return false
    if (len > SHARED_SPAN || chunks.length > SHARED_SPAN_CHUNKS) throw new RangeError('a span larger than a slot')
    const at = (this.head + this.planned) % this.slots.length
    this.own[at] = { readOwn, pos, len, chunks }
    this.thread.plan(this.slots[at]!, fd, pos, len, chunks)
    this.planned++
    return true
  }

  next(): SpanResult {
    this.recycle()
    if (this.planned === 0) throw new RangeError('no span planned')
    const t = this.thread
    const slot = this.slots[this.head]!
    const span = this.own[this.head]!
    for (;;) {
      const state = t.state(slot)
      if (state === DONE) break
      if (state === PLANNED && t.take(slot, PLANNED, MAIN)) {
        this.readHere(this.head)
        break
      }
      // The worker has it: read a later one meanwhile, or wait when there is none.
      if (state === WORKER && !this.readLater()) t.waitWorker(slot)
    }
    const buf = t.buffer(slot).subarray(0, span.len)
    let { got, bad, byWorker } = t.outcome(slot)
    if (got !== span.len) {
      // Failed or short there: read again here, where a failure raises its own error.
      got = span.readOwn(buf, span.pos)
      bad = got === span.len ? checkAll(buf, span.chunks) : -1
      byWorker = false
    }
    this.out = this.head
    this.own[this.head] = undefined
    this.head = (this.head + 1) % this.slots.length
    this.planned--
    return { buf, got, bad, byWorker }
  }

  release(): void {
    if (!this.held) return
    this.held = false
    this.recycle()
    for (let k = 0; k < this.planned; k++) {
      const at = (this.head + k) % this.slots.length
      const slot = this.slots[at]!
      // Not taken yet: nobody will; taken by the worker: it must be done with the fd and the slot first.
      if (!this.thread.take(slot, PLANNED, FREE)) this.thread.waitWorker(slot)
      this.thread.take(slot, DONE, FREE)
      this.own[at] = undefined
    }
    this.planned = 0
    this.thread.giveBack(this.slots)
  }

  /** The slot handed out last is free again: the caller is done with its buffer. */
  private recycle(): void {
    if (this.out < 0) return
    this.thread.take(this.slots[this.out]!, DONE, FREE)
    this.out = -1
  }

  /** Reads and checks the span at ring position `at` here (taken by us already); a failure is recorded, raised once it is the oldest. */
  private readHere(at: number): void {
    const slot = this.slots[at]!
    const { readOwn, pos, len, chunks } = this.own[at]!
    const buf = this.thread.buffer(slot).subarray(0, len)
    let got = -1
    let bad = -1
    try {
      got = readOwn(buf, pos)
      if (got === len) bad = checkAll(buf, chunks)
    } catch {
      got = -1
    }
    this.thread.finish(slot, got, bad)
  }

  /** Takes and reads the oldest span after the head that nobody has taken: whether there was one. */
  private readLater(): boolean {
    for (let k = 1; k < this.planned; k++) {
      const at = (this.head + k) % this.slots.length
      if (this.thread.take(this.slots[at]!, PLANNED, MAIN)) {
        this.readHere(at)
        return true
      }
    }
    return false
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
 * Slots of the check thread (started on first use), or undefined on one
 * core or with every lease held: the caller then reads into its own
 * buffer and checks alone.
 */
export function leaseCheckThread(): Lease | undefined {
  if (thread === undefined) thread = availableParallelism() > 1 ? new CheckThread() : null
  return thread?.lease()
}
