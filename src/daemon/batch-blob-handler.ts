import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import type { ImmediateReads } from '../castore/blob-service.js'
import { B3_LEN, b3, b3Display, b3Matches, toHex } from '../castore/digest.js'
import { BlobState, FRAMED_HEAD_MAX, type ReadBlobsResponse, frameReadBlobsResponse, putBlobsRequest, readBlobsRequest, statBlobsRequest } from '../grpc/batch-messages.js'
import { Status, StatusError } from '../grpc/status.js'
import { BufferPool } from '../util/buffer-pool.js'
import { formatSize } from '../util/size.js'
import { SMALL_PUT, blobHandler, blobPutter } from './blob-handler.js'
import { clientStream, FramedAnswer, requireDigest, serverStream, unary } from './calls.js'
import { foundAndHeld } from './temp-roots.js'
import { UNLIMITED } from './transfers.js'

const EMPTY = new Uint8Array(0)

/** Blobs one batch call may name or send: a request of 1,024 digests is 35 KiB. */
export const MAX_BATCH_BLOBS = 1024
/** Bytes of blobs one PutBlobs call may send; they are held until the client half-closes (a cancelled batch stores nothing). Also what one ReadBlobs answers at once. */
export const MAX_BATCH_BYTES = 4 << 20
/** Largest blob sent or answered whole in a batch: what the put window takes (larger ones go through BlobService). */
export const MAX_BATCH_BLOB = SMALL_PUT

/**
 * Buffers of ReadBlobs answers framed whole (MAX_BATCH_BYTES of blobs and
 * a message head per blob), kept between calls: this machine pays ~2 ms
 * per MiB of fresh memory at its first touch, more than framing costs.
 * Only what an answer fills is ever touched.
 */
const framedBuffers = new BufferPool(MAX_BATCH_BYTES + MAX_BATCH_BLOBS * FRAMED_HEAD_MAX, 4)

/**
 * tvix_store.ext.v1.BatchBlobService, our extension beside tvix's
 * BlobService: many small blobs per call each way, one HTTP/2 stream per
 * batch instead of one per file. Each call holds one transfer slot and is
 * bounded in blobs, bytes and time as a blob Read or Put is; what it
 * stores goes through the same put window as a Put of each blob.
 */
export function batchBlobHandler(...args: Parameters<typeof blobHandler>): UntypedServiceImplementation {
  // The arguments of tvix's BlobService handler: the same store, limits, temp roots and put window.
  const [store, log, transfers = UNLIMITED, rootsOf = () => undefined, window, maxBlobSize = Infinity] = args
  const { blobs } = store
  const put = blobPutter(store, rootsOf, window)
  // Set in the daemon's environment by tests: a log line per batch, to see that clients use them.
  const trace = process.env.TVIX_STORE_TRACE_BATCHES === '1'

  /** A blob whole if it has at most `max` bytes; LARGER beyond (nothing more read), NOT_FOUND if absent. */
  async function whole(d: Uint8Array, max: number, signal: AbortSignal): Promise<{ state: BlobState; data?: Uint8Array }> {
    await window?.settle(d)
    const { openNow } = blobs as Partial<ImmediateReads>
    const now = openNow?.call(blobs, d)
    if (now instanceof Uint8Array) return now.length > max ? { state: BlobState.LARGER } : { state: BlobState.FOUND, data: now }
    const src = now ?? (await blobs.open(d, { signal }))
    if (!src) return { state: BlobState.NOT_FOUND }
    const parts: Uint8Array[] = []
    let size = 0
    for await (const c of src) {
      size += c.length
      // Returning from the loop closes the blob's files.
      if (size > max) return { state: BlobState.LARGER }
      parts.push(c)
    }
    return { state: BlobState.FOUND, data: parts.length === 1 ? parts[0]! : Buffer.concat(parts, size) }
  }

  /**
   * The answers for the first blobs of a batch that are at hand: read and
   * checked whole without a promise (a local store's small blobs), none
   * waiting in the put window; as many as one framed buffer holds. They
   * are written into it as they are read and sent in one write, without
   * an async step or a DATA frame per blob (FramedAnswer). The first blob
   * that is not (a stream, absent, in the window, failing) and the rest go
   * through whole(). `count`: how many blobs the answer holds.
   */
  function atHand(digests: Uint8Array[], max: number): { framed?: FramedAnswer; count: number } {
    const { openNow } = blobs as Partial<ImmediateReads>
    if (!openNow || digests.length === 0) return { count: 0 }
    const buf = framedBuffers.take()
    let at = 0
    let count = 0
    for (const d of digests) {
      if (window?.holds(d)) break
      let now
      try {
        now = openNow.call(blobs, d)
      } catch {
        // A corrupt blob fails the call at its own place, after the answers before it: whole() reads it again and throws.
        break
      }
      if (!(now instanceof Uint8Array)) break
      // A blob over max_blob_size is said in its message, without its bytes.
      const data = now.length > max ? undefined : now
      if (at + FRAMED_HEAD_MAX + (data?.length ?? 0) > buf.length) break
      at = frameReadBlobsResponse(buf, at, count, data ? BlobState.FOUND : BlobState.LARGER, data?.length ?? 0)
      if (data) {
        buf.set(data, at)
        at += data.length
      }
      count++
    }
    if (count === 0) {
      framedBuffers.give(buf)
      return { count }
    }
    return { framed: new FramedAnswer(buf.subarray(0, at), () => framedBuffers.give(buf)), count }
  }

  return {
    // As a Stat of each: committed first if in the put window, and kept by the connection's temp root once found.
    StatBlobs: unary('BatchBlobService/StatBlobs', log, statBlobsRequest.decode, async (req, signal, call) => {
      const digests = batchDigests(req.digests)
      if (trace) log(`trace: StatBlobs of ${digests.length} blobs`)
      const roots = rootsOf(call)
      const present = await Promise.all(
        digests.map(async (d) => {
          await window?.settle(d)
          const has = () => blobs.has(d, { signal })
          return roots ? foundAndHeld(roots, 'blob', toHex(d), has) : has()
        }),
      )
      return { present: Uint8Array.from(present, (p) => (p ? 1 : 0)) }
    }),

    ReadBlobs: serverStream('BatchBlobService/ReadBlobs', log, readBlobsRequest.decode, (req, signal) => {
      const digests = batchDigests(req.digests)
      const max = req.maxBlobSize > 0 ? Math.min(req.maxBlobSize, MAX_BATCH_BLOB) : MAX_BATCH_BLOB
      if (trace) log(`trace: ReadBlobs of ${digests.length} blobs`)
      const { framed, count } = atHand(digests, max)
      if (count === digests.length) return framed ?? []
      // The rest blob by blob, each written out before the next is read: a call holds one blob at a time.
      return (async function* (): AsyncGenerator<ReadBlobsResponse | FramedAnswer> {
        if (framed) yield framed
        for (let index = count; index < digests.length; index++) {
          const { state, data } = await whole(digests[index]!, max, signal)
          yield { index, state, data: data ?? EMPTY }
        }
      })()
    }, transfers),

    // Each blob is checked against the digest the client named as it arrives; the batch is stored
    // only once the client half-closed it (a cancelled or refused batch stores nothing).
    PutBlobs: clientStream('BatchBlobService/PutBlobs', log, putBlobsRequest.decode, async (sent, signal, call) => {
      const got: Array<{ data: Uint8Array; digest: Uint8Array }> = []
      let bytes = 0
      for await (const m of sent) {
        const i = got.length
        if (i >= MAX_BATCH_BLOBS) throw new StatusError(Status.RESOURCE_EXHAUSTED, `a batch holds at most ${MAX_BATCH_BLOBS} blobs`)
        const expected = requireDigest(m.digest, B3_LEN, `blob ${i}'s digest`)
        if (m.data.length > maxBlobSize) throw new StatusError(Status.RESOURCE_EXHAUSTED, `the blob is larger than --max-nar-size (${formatSize(maxBlobSize)}): no path could hold it`)
        if (m.data.length > MAX_BATCH_BLOB) throw new StatusError(Status.INVALID_ARGUMENT, `blob ${i} of the batch has ${m.data.length} bytes: a batch takes blobs of up to ${formatSize(MAX_BATCH_BLOB)} (larger ones go through BlobService.Put)`)
        bytes += m.data.length
        if (bytes > MAX_BATCH_BYTES) throw new StatusError(Status.RESOURCE_EXHAUSTED, `a batch holds at most ${formatSize(MAX_BATCH_BYTES)} of blobs`)
        // Compared as b3Matches does (a hex digest): no digest buffer is made per blob.
        if (!b3Matches(m.data, expected)) throw new StatusError(Status.INVALID_ARGUMENT, `blob ${i} of the batch is ${b3Display(b3(m.data))}, not ${b3Display(expected)} as sent: nothing of the batch was stored`)
        // A copy: the digest outlives the message it came in (held by the put window until it commits).
        got.push({ data: m.data, digest: Buffer.from(expected) })
      }
      if (trace) log(`trace: PutBlobs of ${got.length} blobs`)
      // At once, as concurrent Puts of each would be: their writes and lookups overlap.
      return { digests: await Promise.all(got.map(({ data, digest }) => put(data, signal, call, digest))) }
    }, transfers),
  }
}

/** A batch's digests, checked: at most MAX_BATCH_BLOBS, each 32 bytes. */
function batchDigests(digests: Uint8Array[]): Uint8Array[] {
  if (digests.length > MAX_BATCH_BLOBS) throw new StatusError(Status.RESOURCE_EXHAUSTED, `a batch names at most ${MAX_BATCH_BLOBS} blobs, not ${digests.length}`)
  return digests.map((d, i) => requireDigest(d, B3_LEN, `digests[${i}]`))
}
