import { type BlobInfo, checkedBuffer } from '../../castore/blob-service.js'
import { type B3Digest, b3Display, bytesEqual } from '../../castore/digest.js'
import { LARGER } from '../../castore/read-ahead.js'
import { IntegrityError } from '../../errors.js'
import {
  BlobState,
  framedPutBlobsLength,
  framePutBlobsRequests,
  type PutBlobsRequest,
  type PutBlobsResponse,
  type ReadBlobsFields,
  type ReadBlobsRequest,
  readBlobsResponseAt,
  type StatBlobsRequest,
  type StatBlobsResponse,
} from '../../grpc/batch-messages.js'
import { BATCH_SERVICE } from '../../grpc/definitions.js'
import type { CallOptions } from '../../util/call-options.js'
import { BufferPool } from '../../util/buffer-pool.js'
import { FramedRequests } from './h2-stream.js'
import { isUnimplemented, type RpcClient } from './rpc.js'

/*
 * Small blob Reads and Puts that a walk or an import makes many at once,
 * gathered into tvix_store.ext.v1.BatchBlobService calls: one HTTP/2
 * stream per batch instead of one per blob (the per-call cost on both
 * sides was most of a small file's). Each blob still settles on its own:
 * a read is checked against its digest before it is handed out, an absent
 * one is `undefined` (the caller says NOT_FOUND as without batches), and
 * what a Put's answer means is unchanged. A daemon without the extension
 * (tvix's, or ours with --no-batch-blobs) answers UNIMPLEMENTED: then, for
 * the rest of the connection, each blob takes its own tvix call.
 */

/** Blobs per batch call (the daemon takes up to 1,024). */
const BATCH_BLOBS = 256
/** Bytes per batch, counted from what each blob may have (reads) or has (puts); the daemon takes up to 4 MiB per PutBlobs. */
const BATCH_BYTES = 2 << 20
/** Batch calls in flight: one being answered while the next is asked for. */
const BATCHES_IN_FLIGHT = 3

/**
 * Buffers PutBlobs batches are framed in, kept between calls: a fresh one
 * per batch (~1-2 MiB) cost more at its first touch on this machine than
 * the copy into it. Room for BATCH_BYTES of blobs and a frame and two
 * field heads per blob (5 + 34 + 4 bytes).
 */
const framedPuts = new BufferPool(BATCH_BYTES + BATCH_BLOBS * 43, BATCHES_IN_FLIGHT + 1)

interface Pending<T, R> {
  item: T
  bytes: number
  resolve(r: R): void
  reject(e: unknown): void
  settled: boolean
  signal?: AbortSignal
}

/**
 * Gathers items into batches: what is queued when a call may start goes
 * in one batch (up to BATCH_BLOBS and BATCH_BYTES), with up to
 * BATCHES_IN_FLIGHT calls at once; an item whose signal aborts fails at
 * once with its reason, and a batch all of whose items did is cancelled.
 */
class Coalescer<T, R> {
  private queue: Array<Pending<T, R>> = []
  private inFlight = 0
  private scheduled = false

  constructor(
    /** Sends one batch and settles its items; a rejection fails those it left unsettled. */
    private readonly send: (batch: Array<Pending<T, R>>, signal: AbortSignal) => Promise<void>,
  ) {}

  /**
   * Items waiting, by their signal: one abort listener per signal, not
   * per item (a walk passes one signal to thousands of reads).
   */
  private readonly watched = new WeakMap<AbortSignal, Set<Pending<T, R>>>()

  add(item: T, bytes: number, signal?: AbortSignal): Promise<R> {
    if (signal?.aborted) return Promise.reject(signal.reason)
    return new Promise<R>((resolve, reject) => {
      const p: Pending<T, R> = { item, bytes, signal, settled: false, resolve: () => {}, reject: () => {} }
      const done = () => {
        p.settled = true
        if (signal) this.unwatch(signal, p)
      }
      p.resolve = (r) => !p.settled && (done(), resolve(r))
      p.reject = (e) => !p.settled && (done(), reject(e))
      if (signal) this.watch(signal, p)
      this.queue.push(p)
      this.schedule()
    })
  }

  private watch(signal: AbortSignal, p: Pending<T, R>): void {
    let set = this.watched.get(signal)
    if (!set) {
      const items = (set = new Set())
      this.watched.set(signal, items)
      signal.addEventListener('abort', () => {
        for (const q of [...items]) q.reject(signal.reason)
      }, { once: true })
    }
    set.add(p)
  }

  /** The signal's entry (and its one listener) stays while the signal lives: a set emptied between batches is filled again. */
  private unwatch(signal: AbortSignal, p: Pending<T, R>): void {
    this.watched.get(signal)?.delete(p)
  }

  /** Sends on the next turn: what the caller queues before it yields goes in the same batch. */
  private schedule(): void {
    if (this.scheduled || this.inFlight >= BATCHES_IN_FLIGHT) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      this.flush()
    })
  }

  private flush(): void {
    while (this.inFlight < BATCHES_IN_FLIGHT) {
      this.queue = this.queue.filter((p) => !p.settled)
      if (this.queue.length === 0) return
      let bytes = 0
      let n = 0
      while (n < this.queue.length && n < BATCH_BLOBS && (n === 0 || bytes + this.queue[n]!.bytes <= BATCH_BYTES)) bytes += this.queue[n++]!.bytes
      const batch = this.queue.splice(0, n)
      this.inFlight++
      const ac = new AbortController()
      const unwatch = cancelWhenAllAbort(batch, ac)
      this.send(batch, ac.signal)
        .catch((e) => {
          for (const p of batch) p.reject(e)
        })
        .finally(() => {
          unwatch()
          this.inFlight--
          this.schedule()
        })
    }
  }
}

/** Aborts `ac` once every item of `batch` was aborted by its own signal; returns the clean-up. */
function cancelWhenAllAbort<T, R>(batch: Array<Pending<T, R>>, ac: AbortController): () => void {
  const signals = new Set(batch.map((p) => p.signal))
  if (signals.has(undefined)) return () => {}
  const check = () => [...signals].every((s) => s!.aborted) && ac.abort()
  for (const s of signals) s!.addEventListener('abort', check, { once: true })
  return () => {
    for (const s of signals) s!.removeEventListener('abort', check)
  }
}

export interface ReadItem {
  digest: B3Digest
  maxBytes: number
}
export type ReadResult = Uint8Array | undefined | typeof LARGER

interface PutItem {
  data: Uint8Array
  digest: B3Digest
}

/**
 * Puts a writer should keep unanswered to keep the batches full: the
 * batches in flight and the one filling. With fewer (an import's walk
 * waited at 32), each round trip carried one small batch, and an import
 * of 5,000 small files made 157 PutBlobs calls of 32 blobs instead of 20.
 */
export const PUTS_AT_ONCE = BATCH_BLOBS * (BATCHES_IN_FLIGHT + 1)

/**
 * Bytes of puts a writer hands over between turns of the event loop
 * (BatchedPuts.turnBytes): a daemon's receive window (256 KiB per
 * connection, ours) is opened again, and the next batch formed, only
 * while the loop turns. An import's walk reads files synchronously and
 * gave the loop a turn only once PUTS_AT_ONCE puts were unanswered: the
 * daemon took in the first 256 KiB of what it read, then waited. A
 * quarter of the window: the daemon's window updates are answered while
 * it still has data to take (15,000 files through a daemon: 2.37 s at
 * 256 KiB, 2.11 s at 64 KiB; 16 KiB spent the gain on turns).
 */
export const TURN_BYTES = 64 << 10

/** What a caller that batches its own reads (readMany) may put in one call, and how many calls it keeps in flight: as the Coalescer does. */
export const READ_MANY_LIMITS = { blobs: BATCH_BLOBS, bytes: BATCH_BYTES, calls: BATCHES_IN_FLIGHT } as const

/** The largest blob either batch takes: larger ones go through BlobService. */
export const BATCH_BLOB_BYTES = 1 << 20

export class BlobBatches {
  private readonly reads: Coalescer<ReadItem, ReadResult>
  private readonly puts: Coalescer<PutItem, BlobInfo>
  private readonly stats: Coalescer<B3Digest, boolean>

  constructor(
    private readonly rpc: RpcClient,
    /** Each blob on its own, where the daemon lacks the extension. */
    private readonly fallback: {
      read(digest: B3Digest, maxBytes: number, opts?: CallOptions): Promise<ReadResult>
      put(data: Uint8Array, opts?: CallOptions): Promise<BlobInfo>
      has(digest: B3Digest, opts?: CallOptions): Promise<boolean>
    },
  ) {
    this.reads = new Coalescer((batch, signal) =>
      this.orEach(batch, () => this.readBatch(batch.map((p) => p.item), (i, r) => batch[i]!.resolve(r), (i, e) => batch[i]!.reject(e), signal), (p) => fallback.read(p.item.digest, p.item.maxBytes, { signal: p.signal })),
    )
    this.puts = new Coalescer((batch, signal) => this.orEach(batch, () => this.putBatch(batch, signal), (p) => fallback.put(p.item.data, { signal: p.signal })))
    this.stats = new Coalescer((batch, signal) => this.orEach(batch, () => this.statBatch(batch, signal), (p) => fallback.has(p.item, { signal: p.signal })))
  }

  /** Whether batches are worth asking for: not once the daemon said it has none. */
  get available(): boolean {
    return !this.rpc.batchesUnsupported
  }

  /** A blob of at most `maxBytes` (up to BATCH_BLOB_BYTES), read in a batch and checked: as WholeReads.readWhole. */
  read(digest: B3Digest, maxBytes: number, opts?: CallOptions): Promise<ReadResult> {
    return this.reads.add({ digest, maxBytes }, maxBytes, opts?.signal)
  }

  /**
   * Small blobs read in one batch call made now (no gathering): each
   * handed to `each` checked, in the order asked; rejects at the first
   * that fails its check (those before it were handed out) or when the
   * call fails. For a reader that does its own batching (a tree read
   * ahead): no promise or pending record per blob. Where the daemon has
   * no batches, each blob takes its own Read, handed out in order too.
   */
  async readMany(items: readonly ReadItem[], each: (i: number, r: ReadResult) => void, opts?: CallOptions): Promise<void> {
    const fail = (_i: number, e: unknown) => {
      throw e
    }
    if (!this.rpc.batchesUnsupported) {
      try {
        return await this.readBatch(items, each, fail, opts?.signal)
      } catch (e) {
        if (!isUnimplemented(e)) throw this.rpc.error(e, opts)
        this.rpc.batchesUnsupported = true
      }
    }
    const got = await Promise.allSettled(items.map((it) => this.fallback.read(it.digest, it.maxBytes, opts)))
    for (const [i, r] of got.entries()) r.status === 'fulfilled' ? each(i, r.value) : fail(i, r.reason)
  }

  /** A blob of at most BATCH_BLOB_BYTES whose digest the caller computed from `data`, put in a batch. */
  put(data: Uint8Array, digest: B3Digest, opts?: CallOptions): Promise<BlobInfo> {
    return this.puts.add({ data, digest }, data.length, opts?.signal)
  }

  /** Whether the daemon has the blob, asked in a batch (StatBlobs): as BlobService.has. */
  has(digest: B3Digest, opts?: CallOptions): Promise<boolean> {
    return this.stats.add(digest, 0, opts?.signal)
  }

  /** Runs a batch call; if the daemon has no batches, each item of it (and of any later batch) goes on its own. */
  private async orEach<T, R>(batch: Array<Pending<T, R>>, call: () => Promise<void>, each: (p: Pending<T, R>) => Promise<R>): Promise<void> {
    if (!this.rpc.batchesUnsupported) {
      try {
        return await call()
      } catch (e) {
        if (!isUnimplemented(e)) throw this.rpc.error(e)
        this.rpc.batchesUnsupported = true
      }
    }
    await Promise.all(batch.map((p) => each(p).then(p.resolve, p.reject)))
  }

  /**
   * Reads `items` in one ReadBlobs call, each checked blob handed to
   * `settle` as its message arrives (in order: the stream's own events),
   * one that fails its check to `fail`; a broken answer rejects.
   */
  private async readBatch(items: readonly ReadItem[], settle: (i: number, r: ReadResult) => void, fail: (i: number, e: unknown) => void, signal?: AbortSignal): Promise<void> {
    let maxBlobSize = 0
    const digests = new Array<B3Digest>(items.length)
    for (let i = 0; i < items.length; i++) {
      digests[i] = items[i]!.digest
      maxBlobSize = Math.max(maxBlobSize, items[i]!.maxBytes)
    }
    let next = 0
    // Each message read where it lies in the DATA piece, into one reused record: only a found blob's data gets a view.
    const m: ReadBlobsFields = { index: 0, state: BlobState.FOUND, dataStart: 0, dataEnd: 0 }
    await this.rpc.leanEachBytes<ReadBlobsRequest>(BATCH_SERVICE, 'ReadBlobs', { digests, maxBlobSize }, (b, start, end) => {
      readBlobsResponseAt(b, start, end, m)
      // In order, each once: anything else is a broken answer.
      if (m.index !== next) throw new IntegrityError(`the daemon answered blob ${m.index} of a batch where blob ${next} was due`)
      const i = next++
      const { digest, maxBytes } = items[i]!
      if (m.state === BlobState.NOT_FOUND) settle(i, undefined)
      else if (m.state === BlobState.LARGER || m.dataEnd - m.dataStart > maxBytes) settle(i, LARGER)
      else if (m.state !== BlobState.FOUND) throw new IntegrityError(`the daemon answered blob ${b3Display(digest)} with an unknown state ${m.state}`)
      else {
        // Checked whole before anyone sees a byte of it.
        let data
        try {
          data = checkedBuffer(digest, b.subarray(m.dataStart, m.dataEnd))
        } catch (e) {
          fail(i, e)
          return
        }
        settle(i, data)
      }
    }, { signal })
    if (next < items.length) throw new IntegrityError(`the daemon's batch answer left out blob ${b3Display(items[next]!.digest)}`)
  }

  private async statBatch(batch: Array<Pending<B3Digest, boolean>>, signal: AbortSignal): Promise<void> {
    const res = await this.rpc.unary<StatBlobsRequest, StatBlobsResponse>(BATCH_SERVICE, 'StatBlobs', { digests: batch.map((p) => p.item) }, { signal })
    if (res.present.length !== batch.length) throw new IntegrityError(`the daemon answered ${res.present.length} of a batch of ${batch.length} blob lookups`)
    for (const [i, p] of batch.entries()) p.resolve(res.present[i] === 1)
  }

  private async putBatch(batch: Array<Pending<PutItem, BlobInfo>>, signal: AbortSignal): Promise<void> {
    const reqs: PutBlobsRequest[] = batch.map((p) => ({ digest: p.item.digest, data: p.item.data }))
    const size = framedPutBlobsLength(reqs)
    const buf = size <= framedPuts.size ? framedPuts.take() : Buffer.allocUnsafe(size)
    const framed = new FramedRequests(buf.subarray(0, framePutBlobsRequests(buf, reqs)))
    const res = await this.rpc.leanBatch<PutBlobsResponse>(BATCH_SERVICE, 'PutBlobs', framed, 64 + 40 * batch.length, { signal })
    // Answered, so the daemon read every byte and HTTP/2 holds none of them. A failed call's buffer is
    // not reused: a write of it may still be queued.
    framedPuts.give(buf)
    if (res.digests.length !== batch.length) throw new IntegrityError(`the daemon stored ${res.digests.length} blobs of a batch of ${batch.length}`)
    for (const [i, p] of batch.entries()) {
      const { digest, data } = p.item
      if (!bytesEqual(res.digests[i]!, digest)) p.reject(new IntegrityError(`the daemon stored blob ${b3Display(digest)} as ${b3Display(res.digests[i]!)}`))
      else p.resolve({ digest, size: data.length })
    }
  }
}
