import {
  type BatchedPuts,
  type BlobInfo,
  type BlobService,
  type ChunkMeta,
  type ByteSource,
  type CopiedPuts,
  type OpenOptions,
  type StagePutOptions,
  MAX_VERIFIED_CHUNK,
  chunkwiseCheckable,
  iterateSource,
  verifiedBuffer,
  verifyBlob,
  verifyChunks,
} from '../../castore/blob-service.js'
import { type B3Digest, b3, b3Display, b3Hasher, bytesEqual } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import { BLOB_CHUNK_BYTES } from '../../grpc/definitions.js'
import { type StatBlobRequest, type StatBlobResponse, blobChunk } from '../../grpc/messages.js'
import { abortable } from '../../util/abortable.js'
import type { CallOptions } from '../../util/call-options.js'
import { LARGER, type WholeRead } from '../../castore/read-ahead.js'
import type { UncheckedReads } from '../../castore/chunk-transfer.js'
import { isNotFound, peek, type RpcClient } from './rpc.js'
import { MessageRing } from './h2-stream.js'
import { isReusable } from '../../castore/reusable-source.js'
import { CopySlabs } from '../../util/copy-slabs.js'
import { BATCH_BLOB_BYTES, BlobBatches, PUTS_AT_ONCE, READ_MANY_LIMITS, TURN_BYTES } from './blob-batches.js'

const SERVICE = 'tvix.castore.v1.BlobService'

/** Buffers of a lent read's MessageRing: the three messages it may hold (see verified(); unchecked: the reader's, one complete, one assembled), and one to spare. */
const LENT_MESSAGES = 4

/**
 * Slabs for putCopy: an import's walk keeps up to 32 MiB of small files
 * unanswered, ~4 MiB in the usual run of files of a few KiB.
 */
const putCopies = new CopySlabs(1 << 20, 16)

/** No staging (hasStaging is false): the protocol has no transactions, a put is final when the daemon answers. */
export class GrpcBlobService implements BlobService, BatchedPuts, CopiedPuts, UncheckedReads {
  /** Small blob Reads and Puts gathered into our BatchBlobService's calls (each on its own where the daemon lacks them). */
  private readonly batches: BlobBatches

  constructor(private readonly rpc: RpcClient) {
    this.batches = new BlobBatches(rpc, { read: (d, max, o) => this.readOne(d, max, o), put: (data, o) => this.putOne(data, o), has: (d, o) => this.hasOne(d, o) })
  }

  /** Small reads a walk may keep in flight (WholeReads): many where they go in batches. */
  get readsAtOnce(): number {
    return this.batches.available ? Infinity : 8
  }

  /** Small puts worth keeping unanswered (BatchedPuts): enough to fill the batches where the daemon has them. */
  get putsAtOnce(): number | undefined {
    return this.batches.available ? PUTS_AT_ONCE : undefined
  }

  /** Bytes handed over between turns of the event loop (BatchedPuts), where puts go in batches. */
  get turnBytes(): number | undefined {
    return this.batches.available ? TURN_BYTES : undefined
  }

  /** Stat with send_chunks: the chunk list of a chunked blob (empty if stored whole). */
  async chunks(digest: B3Digest, opts?: CallOptions): Promise<ChunkMeta[] | undefined> {
    try {
      const r = await this.rpc.unary<StatBlobRequest, StatBlobResponse>(SERVICE, 'Stat', { digest, sendChunks: true, sendBao: false }, opts)
      for (const c of r.chunks) if (c.digest.length !== 32) throw new IntegrityError('the daemon listed a chunk with a malformed digest')
      return r.chunks
    } catch (e) {
      if (isNotFound(e)) return undefined
      if (e instanceof IntegrityError) throw e
      throw this.rpc.error(e, opts)
    }
  }

  /** Asked in a batch of lookups where the daemon has them (a copy asks for each blob of a tree). */
  has(digest: B3Digest, opts?: CallOptions): Promise<boolean> {
    return this.batches.available ? this.batches.has(digest, opts) : this.hasOne(digest, opts)
  }

  private async hasOne(digest: B3Digest, opts?: CallOptions): Promise<boolean> {
    try {
      await this.rpc.unary<StatBlobRequest, unknown>(SERVICE, 'Stat', { digest, sendChunks: false, sendBao: false }, opts)
      return true
    } catch (e) {
      if (isNotFound(e)) return false
      throw this.rpc.error(e, opts)
    }
  }

  /**
   * An aborted signal cancels the Read: the stream fails at once with the
   * signal's reason. `lend`: a large blob's messages are received into a
   * MessageRing, so each piece is valid only until the next is asked for.
   */
  async open(digest: B3Digest, opts?: OpenOptions): Promise<AsyncIterable<Uint8Array> | undefined> {
    const ring = opts?.lend ? new MessageRing(LENT_MESSAGES, BLOB_CHUNK_BYTES + 16) : undefined
    const received = await this.receive(digest, opts, ring)
    if (!received) return undefined
    // The server does not re-check what it sends; we do (SPEC 3.2), before the bytes go on.
    const verified = this.verified(digest, received, opts, ring)
    // What grpc-js had buffered before the call was cancelled is not passed on either.
    return opts?.signal ? abortable(verified, opts.signal) : verified
  }

  /**
   * A Read's messages as they arrive, undefined if the blob is absent. As
   * UncheckedReads: for a writer that checks each chunk against the list
   * and the whole blob itself (no second hashing here, and no Stat for a
   * chunk list it has). `lend`: each message is valid until the next is
   * asked for (received into a MessageRing from the first).
   */
  readUnchecked(digest: B3Digest, opts?: OpenOptions): Promise<AsyncGenerator<Uint8Array> | undefined> {
    const ring = opts?.lend ? new MessageRing(LENT_MESSAGES, BLOB_CHUNK_BYTES + 16) : undefined
    if (ring) ring.lending = true
    return this.receive(digest, opts, ring)
  }

  /** A Read's messages as they arrive (see readUnchecked), those that span DATA pieces assembled in `ring` while it is lending. */
  private async receive(digest: B3Digest, opts?: CallOptions, ring?: MessageRing): Promise<AsyncGenerator<Uint8Array> | undefined> {
    const call = this.rpc.leanServerStream<Uint8Array, Uint8Array>(SERVICE, 'Read', digest, opts, ring)
    let head
    try {
      head = await peek(call)
    } catch (e) {
      throw this.rpc.error(e, opts)
    }
    if (!head) return undefined
    const { first, rest } = head
    const rpc = this.rpc
    async function* received(): AsyncGenerator<Uint8Array> {
      try {
        if (first.done) return
        yield first.value
        for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value
      } catch (e) {
        throw rpc.error(e, opts)
      } finally {
        // A reader that stops early (a corrupt chunk, `| head`) ends the call (it is cancelled at the daemon).
        await rest.return?.()
      }
    }
    return received()
  }

  /**
   * A blob as it arrives, checked before its bytes are passed on. Up to
   * MAX_VERIFIED_CHUNK it is held and checked whole (most files: no extra
   * call). A larger one is checked chunk by chunk against the list Stat
   * gives (one chunk held at a time), and whole at its end. A daemon that
   * lists no chunks for it (tvix stores most blobs unchunked) gives no
   * digest of anything smaller than the blob, and holding a blob of any
   * size would break flat memory: it is checked at its end only, with
   * its last piece held back until then (verifyBlob).
   *
   * With a `ring` (a lent read), the messages held at the start come in
   * fresh buffers; the ring is used from the first message after them,
   * when at most three messages are alive at once: the piece verifyBlob
   * holds back, the one verifyChunks is reading (it copies a chunk that
   * spans messages as they come), and the one being assembled.
   */
  private async *verified(digest: B3Digest, src: AsyncGenerator<Uint8Array>, opts?: CallOptions, ring?: MessageRing): AsyncGenerator<Uint8Array> {
    try {
      const head: Uint8Array[] = []
      let size = 0
      for (;;) {
        const r = await src.next()
        if (r.done) {
          // Most blobs come in one message: checked in place, not copied.
          yield* verifiedBuffer(digest, head.length === 1 ? head[0]! : Buffer.concat(head, size))
          return
        }
        head.push(r.value)
        size += r.value.length
        if (size > MAX_VERIFIED_CHUNK) break
      }
      const chunks = await this.chunks(digest, opts)
      const all = (async function* () {
        yield* head.splice(0)
        if (ring) ring.lending = true
        yield* src
      })()
      yield* verifyBlob(digest, chunks && chunkwiseCheckable(chunks) ? verifyChunks(digest, chunks, all, ring !== undefined) : all)
    } finally {
      await src.return(undefined)
    }
  }

  /** A small blob read whole (WholeReads), in a batch where it fits one: checked whole before it is returned. */
  readWhole(digest: B3Digest, maxBytes: number, opts?: CallOptions): Promise<Uint8Array | undefined | typeof LARGER> {
    if (maxBytes <= BATCH_BLOB_BYTES && this.batches.available) return this.batches.read(digest, maxBytes, opts)
    return this.readOne(digest, maxBytes, opts)
  }

  /** Small blobs (each of at most BATCH_BLOB_BYTES) in one batch call (WholeReads.readMany), while the daemon has batches. */
  readMany(items: ReadonlyArray<{ digest: B3Digest; maxBytes: number }>, each: (i: number, r: WholeRead) => void, opts?: CallOptions): Promise<void> {
    return this.batches.readMany(items, each, opts)
  }

  /** What one readMany call takes (WholeReads): undefined once the daemon said it has no batches. */
  get readManyLimits(): { blobs: number; bytes: number; calls: number } | undefined {
    return this.batches.available ? READ_MANY_LIMITS : undefined
  }

  /** A small blob in one lean Read: checked whole before it is returned. */
  private async readOne(digest: B3Digest, maxBytes: number, opts?: CallOptions): Promise<Uint8Array | undefined | typeof LARGER> {
    let messages
    try {
      messages = await this.rpc.leanCollect<Uint8Array, Uint8Array>(SERVICE, 'Read', digest, maxBytes, opts)
    } catch (e) {
      if (isNotFound(e)) return undefined
      throw this.rpc.error(e, opts)
    }
    if (!messages) return LARGER
    const data = messages.length === 1 ? messages[0]! : Buffer.concat(messages)
    // Throws unless the bytes match the digest.
    verifiedBuffer(digest, data)
    return data
  }

  async put(src: ByteSource, opts?: StagePutOptions): Promise<BlobInfo> {
    // A small blob in memory (most files of an import), the empty one too, in a batch where the daemon has them
    // (the digest the caller computed, or ours, is checked by the daemon): no grpc-js stream.
    if (src instanceof Uint8Array && src.length <= BATCH_BLOB_BYTES && this.batches.available) return this.batches.put(src, opts?.digest ?? b3(src), opts)
    // Else one message: one lean request.
    if (src instanceof Uint8Array && src.length > 0 && src.length <= BLOB_CHUNK_BYTES) return this.putOne(src, opts)
    const h = b3Hasher()
    let size = 0
    // Each message as its head and a view of the data: copied once, into the framed buffer that is sent.
    const head = new Uint8Array(16)
    // Each piece is hashed and copied out before the next is asked for: a source's reused buffers will do.
    const pieces = isReusable(src) ? src.reusing() : iterateSource(src)
    async function* messages(): AsyncGenerator<readonly Uint8Array[]> {
      for await (const c of pieces) {
        h.update(c)
        size += c.length
        for (let i = 0; i < c.length; i += BLOB_CHUNK_BYTES) {
          const data = c.subarray(i, i + BLOB_CHUNK_BYTES)
          yield [head.subarray(0, blobChunk.head(head, 0, data.length)), data]
        }
      }
    }
    let digest: Uint8Array
    try {
      digest = await this.rpc.leanClientStream<Uint8Array>(SERVICE, 'Put', messages(), opts)
    } catch (e) {
      throw this.rpc.error(e, opts)
    }
    return checkedPut(h.digest(), digest, size)
  }

  /**
   * put() of a buffer the caller fills again once this returns (CopiedPuts):
   * copied into reused slabs, each copy released once its put succeeded
   * (the call that carried it is over). A failed put's copy is not reused:
   * a write of it may still be queued.
   */
  async putCopy(data: Uint8Array, opts: StagePutOptions & { digest: B3Digest }): Promise<BlobInfo> {
    const copy = putCopies.copy(data)
    const info = await this.put(copy.bytes, opts)
    copy.release()
    return info
  }

  /** A Put of one message: sent whole with the request (the wire of a client stream of one message). */
  private async putOne(data: Uint8Array, opts?: CallOptions): Promise<BlobInfo> {
    let answer: Uint8Array[] | undefined
    try {
      answer = await this.rpc.leanCollect<Uint8Array, Uint8Array>(SERVICE, 'Put', data, 1024, opts)
    } catch (e) {
      throw this.rpc.error(e, opts)
    }
    if (answer?.length !== 1) throw new IntegrityError(`the daemon answered a blob Put with ${answer ? answer.length : 'too many'} messages`)
    return checkedPut(b3(data), answer[0]!, data.length)
  }
}

function checkedPut(ours: B3Digest, theirs: Uint8Array, size: number): BlobInfo {
  if (!bytesEqual(ours, theirs)) throw new IntegrityError(`the daemon stored blob ${b3Display(ours)} as ${b3Display(theirs)}`)
  return { digest: ours, size }
}
