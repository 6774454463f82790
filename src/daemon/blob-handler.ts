import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import type { ImmediateReads } from '../castore/blob-service.js'
import { B3_LEN, b3Display, toHex } from '../castore/digest.js'
import { ConflictError } from '../errors.js'
import { BLOB_CHUNK_BYTES, MAX_MESSAGE_BYTES, blobChunkFrameHead } from '../grpc/definitions.js'
import { blobChunk, digestMessage, statBlobRequest } from '../grpc/messages.js'
import { Status, StatusError } from '../grpc/status.js'
import type { Store } from '../store/store.js'
import { abortable } from '../util/abortable.js'
import { clientStream, type Log, requireDigest, serverStream, unary } from './calls.js'
import type { PutWindow } from './put-window.js'
import { foundAndHeld, type RootsOf } from './temp-roots.js'
import { type Transfers, UNLIMITED } from './transfers.js'
import { inWriteSession } from '../store/capabilities.js'
import { formatSize } from '../util/size.js'
import { BufferPool } from '../util/buffer-pool.js'
import { lentSource } from '../castore/reusable-source.js'
import { putData } from './put-data.js'

/**
 * tvix.castore.v1.BlobService over any BlobService (SPEC 3.2). `window`:
 * where small blob Puts are staged and committed together (PutWindow).
 * A Put of more than `maxBlobSize` bytes is refused as they arrive: a
 * client that sends forever fills no disk.
 */
export function blobHandler(
  store: Store,
  log: Log,
  transfers: Transfers = UNLIMITED,
  rootsOf: RootsOf = () => undefined,
  window?: PutWindow,
  maxBlobSize = Infinity,
): UntypedServiceImplementation {
  const { blobs } = store
  const put = blobPutter(store, rootsOf, window)
  /** A blob as a stream of Read messages: `lent`, what openNow gave for it (a stream), or else the store's open. */
  async function* readMessages(d: Uint8Array, lent: AsyncIterable<Uint8Array> | undefined, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    // A cancelled call closes the blob's files at once, even while its next message waits.
    const data = lent ? abortable(lent, signal) : await blobs.open(d, { signal })
    if (!data) throw new StatusError(Status.NOT_FOUND, `blob ${b3Display(d)} not found`)
    for await (const chunk of data) {
      for (let i = 0; i < chunk.length; i += BLOB_CHUNK_BYTES) yield chunk.subarray(i, i + BLOB_CHUNK_BYTES)
    }
  }
  return {
    Stat: unary('BlobService/Stat', log, statBlobRequest.decode, async (req, signal, call) => {
      const d = requireDigest(req.digest, B3_LEN)
      await window?.settle(d)
      // With send_chunks, a chunked blob lists its chunks (each readable by its digest).
      const chunks = req.sendChunks && blobs.chunks ? await blobs.chunks(d, { signal }) : undefined
      // "Present" is a promise to an uploader, who will not send it: a temp root keeps it.
      const roots = rootsOf(call)
      const present = roots ? await foundAndHeld(roots, 'blob', toHex(d), () => blobs.has(d, { signal })) : chunks !== undefined || (await blobs.has(d, { signal }))
      if (!present) throw new StatusError(Status.NOT_FOUND, `blob ${b3Display(d)} not found`)
      return { chunks: chunks ?? [], bao: new Uint8Array(0) }
    }),

    Read: serverStream('BlobService/Read', log, digestMessage.decode, (digest, signal) => {
      const d = requireDigest(digest, B3_LEN)
      // A blob still in the put window is committed first.
      if (window?.holds(d)) return (async function* () {
        await window.settle(d)
        yield* readMessages(d, undefined, signal)
      })()
      // A local store lends one read buffer (no fresh memory per span): serverStream writes each message out before asking for the next.
      const { openNow } = blobs as Partial<ImmediateReads>
      const lent = openNow?.call(blobs, d, undefined, true)
      // A small blob read and checked whole (most files of a tree): its messages at once, no step per message.
      if (lent instanceof Uint8Array) return messagesOf(lent)
      return readMessages(d, lent, signal)
    }, transfers, true, { head: blobChunkFrameHead }),

    // A write session: the store's gc does not sweep while a blob goes in.
    // Kept by a temp root until the client's PathInfo (a later call) refers to it.
    // A small blob (all of it within SMALL_PUT) goes to the window, answered once staged; a larger one is
    // final when answered: written and committed in a write session of its own (its pack may borrow chunks).
    // Its data read straight off HTTP/2 where grpc-js lets us (putData): lent pieces of a reused buffer.
    Put: clientStream('BlobService/Put', log, blobChunk.decode, async (sent, signal, call, lent) => {
      const chunks = atMost(sent, maxBlobSize)
      if (!window) return put(lent ? lentSource(chunks) : chunks, signal, call)
      return put(await smallOrStream(chunks, lent), signal, call)
    }, transfers, pooledPutData),
  }
}

/**
 * How the daemon stores a blob a client sent (a Put's, or one of a
 * PutBlobs batch): a small one in memory goes to the put window where
 * there is one; else it is final when this returns, written in a write
 * session of its own and kept by the connection's temp root. `digest`:
 * the small blob's BLAKE3, if already computed.
 */
export function blobPutter(store: Store, rootsOf: RootsOf, window?: PutWindow) {
  return async (src: Uint8Array | AsyncIterable<Uint8Array>, signal: AbortSignal, call: object, digest?: Uint8Array): Promise<Uint8Array> => {
    if (src instanceof Uint8Array && window) return window.put(src, rootsOf(call), digest)
    return inWriteSession(store, async ({ blobs }) => {
      const { digest } = await blobs.put(src, { signal })
      const roots = rootsOf(call)
      if (roots && !(await roots.holdIf('blob', toHex(digest), () => blobs.has(digest)))) throw new ConflictError(`blob ${b3Display(digest)} was garbage-collected as it was written; send it again`)
      return digest
    })
  }
}

/** Blobs up to this size go through the put window: a local store's small blobs (plain files or bundle members). */
export const SMALL_PUT = 1 << 20
/**
 * Bytes of Put data a daemon's reader hands on at once (putData): a bit
 * more than SMALL_PUT, so the first piece of a blob the window does not
 * take already says so, and is passed on without a copy.
 */
const PUT_BUFFER = SMALL_PUT + (64 << 10)

/**
 * A Put's whole data if it ends within SMALL_PUT bytes; else its messages
 * as a stream (those read so far first). Reading to the end also tells
 * that the call was not cancelled: the messages throw if it was. `lent`:
 * each message is valid until the next is asked for (putData): what is
 * held is copied, and the stream is a ReusableSource.
 */
async function smallOrStream(chunks: AsyncIterable<Uint8Array>, lent: boolean): Promise<Uint8Array | AsyncIterable<Uint8Array>> {
  const it = chunks[Symbol.asyncIterator]()
  const head: Uint8Array[] = []
  let size = 0
  for (;;) {
    const r = await it.next()
    if (r.done) return head.length === 1 ? head[0]! : Buffer.concat(head, size)
    size += r.value.length
    // A lent piece that makes the blob large is passed on as it is (putData's first piece of a large blob: nothing copied).
    if (size > SMALL_PUT && lent) {
      const rest = (async function* () {
        yield* head.splice(0)
        yield r.value
        for (let next = await it.next(); !next.done; next = await it.next()) yield next.value
      })()
      return lentSource(rest)
    }
    head.push(lent ? Buffer.from(r.value) : r.value)
    if (size > SMALL_PUT) break
  }
  return (async function* () {
    yield* head.splice(0)
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value
  })()
}

/** Buffers Put data is read into (putData), kept from one Put to the next: each fresh one would cost its page faults. */
const putBuffers = new BufferPool(PUT_BUFFER, 2)

/** putData into a pooled buffer, given back once the Put has read its last piece (or stopped). */
async function* pooledPutData(pieces: AsyncIterable<Buffer>): AsyncGenerator<Uint8Array> {
  const buf = putBuffers.take()
  try {
    yield* putData(pieces, buf, MAX_MESSAGE_BYTES)
  } finally {
    putBuffers.give(buf)
  }
}

/** `chunks`, failing with RESOURCE_EXHAUSTED once they add up to more than `max` bytes. */
async function* atMost(chunks: AsyncIterable<Uint8Array>, max: number): AsyncGenerator<Uint8Array> {
  let size = 0
  for await (const c of chunks) {
    size += c.length
    if (size > max) throw new StatusError(Status.RESOURCE_EXHAUSTED, `the blob is larger than --max-nar-size (${formatSize(max)}): no path could hold it`)
    yield c
  }
}

/** A blob's bytes as Read messages of at most BLOB_CHUNK_BYTES. */
function messagesOf(data: Uint8Array): Uint8Array[] {
  if (data.length <= BLOB_CHUNK_BYTES) return data.length > 0 ? [data] : []
  const out: Uint8Array[] = []
  for (let i = 0; i < data.length; i += BLOB_CHUNK_BYTES) out.push(data.subarray(i, i + BLOB_CHUNK_BYTES))
  return out
}
