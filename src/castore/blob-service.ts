import { IntegrityError } from '../errors.js'
import { abortable } from '../util/abortable.js'
import type { CallOptions } from '../util/call-options.js'
import { type B3Digest, b3Hasher, b3Matches, bytesEqual, b3Display, toHex } from './digest.js'

export type ByteSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>

/** One chunk of a chunked blob (SPEC 1.2 StatBlobResponse.ChunkMeta). */
export interface ChunkMeta {
  digest: B3Digest
  size: number
}

export interface BlobInfo {
  digest: B3Digest
  size: number
}

/**
 * `lend`: the caller is done with each piece before it asks for the next
 * (it writes it out or copies it), so a store may hand out pieces of
 * buffers it reuses (a daemon's client does; one that cannot ignores it).
 */
export interface OpenOptions extends CallOptions {
  lend?: boolean
}

/** Content-addressed blob storage keyed by BLAKE3. */
export interface BlobService {
  has(digest: B3Digest, opts?: CallOptions): Promise<boolean>
  /** The blob's bytes, digest-checked as they are read, or undefined if absent. */
  open(digest: B3Digest, opts?: OpenOptions): Promise<AsyncIterable<Uint8Array> | undefined>
  /** Stores the bytes and returns the digest computed while writing. */
  put(src: ByteSource, opts?: CallOptions): Promise<BlobInfo>
  /** The blob's chunks in order (empty if stored whole), undefined if absent; optional capability. */
  chunks?(digest: B3Digest, opts?: CallOptions): Promise<ChunkMeta[] | undefined>
  /**
   * The blob's size in bytes without reading its data, undefined if
   * absent; optional capability (a backend that cannot tell leaves it out,
   * and callers fall back to has()).
   */
  size?(digest: B3Digest, opts?: CallOptions): Promise<number | undefined>
}

/** A store that lists a blob's chunks (each readable by its own digest). */
export function hasChunkLists(blobs: BlobService): blobs is BlobService & Required<Pick<BlobService, 'chunks'>> {
  return typeof blobs.chunks === 'function'
}

/**
 * Optional capability of a BlobService: it reads from this machine (memory,
 * a local disk), so a blob assembled from chunks it holds costs no round
 * trip per chunk. A network client leaves it out, and so does a combinator
 * that may read over one (the cache): absent is the safe default.
 */
export interface LocalReads {
  readonly readsLocally: true
}

export function readsLocally(blobs: BlobService): boolean {
  return (blobs as Partial<LocalReads>).readsLocally === true
}

/** Options of a stage's put. */
export interface StagePutOptions extends CallOptions {
  /**
   * The BLAKE3 of `src`, a buffer, that the caller has just computed from
   * these very bytes (an import's walk hashes each small file to build its
   * Directory): a stage may use it instead of hashing them again. Ignored
   * for streams, and by stages that hash anyway.
   */
  digest?: B3Digest
}

export interface BlobStage {
  /** True when every put is visible at once (writeThroughStage): commit() and abort() do nothing. */
  readonly writesThrough?: boolean
  /**
   * Small puts worth keeping unanswered at once, where the default bound
   * of a walk would leave the store waiting: puts that a daemon answers in
   * batches (see BatchedPuts) need many in flight to fill them.
   */
  readonly putsAtOnce?: number
  /**
   * Bytes of small files a walk may read between turns of the event loop,
   * where puts travel on a connection (BatchedPuts.turnBytes); none asked
   * for when unset.
   */
  readonly turnBytes?: number
  put(src: ByteSource, opts?: StagePutOptions): Promise<BlobInfo>
  /**
   * Puts a small buffer whose BLAKE3 the caller has just computed from it,
   * if the stage can do that at once: the blob is already stored (or staged
   * here), or the stage copies it into something of its own. Its info, or
   * undefined and the caller put()s it. What this took keeps no reference
   * to `data`, so an import's walk can read every small file into one
   * buffer, and skips a chain of promises per file.
   */
  putNow?(data: Uint8Array, digest: B3Digest): BlobInfo | undefined
  /**
   * put() of a small buffer (up to 1 MiB) with its digest, which the caller
   * fills again once this returns: the stage copies it into memory of its
   * own first (a daemon's client: reused slabs, where a fresh buffer per
   * file cost more than the copy). Without it callers copy (putReused).
   */
  putCopy?(data: Uint8Array, opts: StagePutOptions & { digest: B3Digest }): Promise<BlobInfo>
  commit(opts?: CallOptions): Promise<void>
  abort(opts?: CallOptions): Promise<void>
}

/** Puts a small buffer that the caller fills again once this returns: the stage's own copy where it makes one, else a fresh one. */
export function putReused(stage: BlobStage, data: Uint8Array, opts: StagePutOptions & { digest: B3Digest }): Promise<BlobInfo> {
  return stage.putCopy ? stage.putCopy(data, opts) : stage.put(Buffer.from(data), opts)
}

/**
 * Transactional blob writes, an optional capability: what a stage puts
 * stays invisible until commit(), and abort() leaves the store as it was.
 * The tvix gRPC protocol has no transactions, so its client does not offer it.
 */
export interface Staging {
  stage(opts?: CallOptions): BlobStage
}

export function hasStaging(blobs: BlobService): blobs is BlobService & Staging {
  return typeof (blobs as Partial<Staging>).stage === 'function'
}

/**
 * Optional capability of a BlobService whose small puts are answered in
 * batches, one round trip per batch: how many unanswered puts keep its
 * batches full (a writer that waits after fewer makes one small batch per
 * round trip).
 */
export interface BatchedPuts {
  readonly putsAtOnce: number | undefined
  /**
   * Bytes a writer may hand over before it lets the event loop turn: the
   * batches are formed and their bytes sent (as the daemon's receive
   * window opens again) only then, so a writer that reads on synchronously
   * leaves the daemon waiting.
   */
  readonly turnBytes: number | undefined
}

/** Optional capability of a BlobService: BlobStage.putCopy, for the write-through stage over it. */
export interface CopiedPuts {
  putCopy(data: Uint8Array, opts: StagePutOptions & { digest: B3Digest }): Promise<BlobInfo>
}

/** Digests a write-through stage remembers having put (then it forgets them all): a few MiB. */
const PUT_ONCE_MAX = 1 << 16

/**
 * A stage for backends without transactions: every put is final at once,
 * abort() takes nothing back. A buffer whose digest the caller gives
 * (StagePutOptions.digest: an import's small files) is put once per stage:
 * through a daemon, duplicate and empty files cost no second call.
 */
export function writeThroughStage(blobs: Pick<BlobService, 'put'> & Partial<BatchedPuts & CopiedPuts>): BlobStage {
  const once = new Map<string, Promise<BlobInfo>>()
  const putOnce = (digest: B3Digest, put: () => Promise<BlobInfo>): Promise<BlobInfo> => {
    const key = toHex(digest)
    let p = once.get(key)
    if (p) return p
    if (once.size >= PUT_ONCE_MAX) once.clear()
    p = put()
    once.set(key, p)
    // A failed put is not remembered: the caller's failure stands, a later put tries again.
    p.catch(() => once.get(key) === p && once.delete(key))
    return p
  }
  const put = (src: ByteSource, opts?: StagePutOptions): Promise<BlobInfo> =>
    opts?.digest && src instanceof Uint8Array ? putOnce(opts.digest, () => blobs.put(src, opts)) : blobs.put(src, opts)
  const putCopy = blobs.putCopy && ((data: Uint8Array, opts: StagePutOptions & { digest: B3Digest }) => putOnce(opts.digest, () => blobs.putCopy!(data, opts)))
  return { writesThrough: true, putsAtOnce: blobs.putsAtOnce, turnBytes: blobs.turnBytes, put, ...(putCopy && { putCopy }), commit: async () => {}, abort: async () => {} }
}

/**
 * `src`, failing with the signal's reason once it aborts (between pieces).
 * A buffer is all there already: it is only checked, so writers keep
 * their fast path for it.
 */
export function abortableSource(src: ByteSource, opts?: CallOptions): ByteSource {
  opts?.signal?.throwIfAborted()
  return opts?.signal && !(src instanceof Uint8Array) ? abortable(src, opts.signal) : src
}

/**
 * The store's stage where it has one, else the write-through fallback:
 * for callers that only need "visible no earlier than commit" where the
 * backend can give it (a failed import leaves fewer orphan blobs), and
 * accept orphans (gc removes them) where it cannot.
 */
export function stageOrWriteThrough(blobs: BlobService): BlobStage {
  return hasStaging(blobs) ? blobs.stage() : writeThroughStage(blobs)
}

export async function* iterateSource(src: ByteSource): AsyncGenerator<Uint8Array> {
  if (src instanceof Uint8Array) yield src
  else yield* src
}

/**
 * Passes chunks through and fails at the end unless their BLAKE3 equals
 * `digest`: every read path checks what it serves. The last piece waits
 * for that check, so a corrupt blob never comes out whole; what comes
 * before it is only as checked as the source makes it (verifyChunks, or
 * a local pack's reader, checks each chunk before it leaves).
 */
export async function* verifyBlob(digest: B3Digest, chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const h = b3Hasher()
  let held: Uint8Array | undefined
  try {
    for await (const c of chunks) {
      h.update(c)
      if (held) yield held
      held = c
    }
  } catch (e) {
    // The source failed (a chunk it checked, or I/O): what it gave before is out as it would be without the hold-back.
    if (held) yield held
    throw e
  }
  if (!bytesEqual(h.digest(), digest)) throw new IntegrityError(`blob ${b3Display(digest)} is corrupt: its contents do not match its digest`)
  if (held) yield held
}

/**
 * Largest chunk verifyChunks holds to check it. Local packs cut at
 * 256 KiB, tvix's chunkers well below this; a source listing larger ones
 * is checked as a whole blob only (see GrpcBlobService.open).
 */
export const MAX_VERIFIED_CHUNK = 4 << 20

/** Whether verifyChunks can check a blob by this chunk list within its memory bound. */
export function chunkwiseCheckable(chunks: ChunkMeta[]): boolean {
  return chunks.length > 0 && chunks.every((c) => c.size > 0 && c.size <= MAX_VERIFIED_CHUNK)
}

/**
 * Checks a blob's byte stream against its chunk list and passes on each
 * chunk only once it matches its own digest: at most one chunk
 * (MAX_VERIFIED_CHUNK) is held, and no byte of a bad chunk, or of
 * anything after it, leaves. Chunks inside one piece are checked in place
 * and passed on together (few, large pieces downstream); only a chunk
 * that spans pieces is copied, as its pieces arrive, so no piece is held
 * once the next is asked for. `lend`: the source's pieces and ours are
 * each valid until the next is asked for, and a spanning chunk is copied
 * into one of two reused buffers (one may still be held downstream, e.g.
 * verifyBlob's last piece, while the other fills).
 */
export async function* verifyChunks(blob: B3Digest, chunks: ChunkMeta[], src: AsyncIterable<Uint8Array>, lend = false): AsyncGenerator<Uint8Array> {
  let i = 0
  /** The chunk that spans pieces, and how much of it is here. */
  let span: Buffer | undefined
  let have = 0
  const spans: Buffer[] = []
  let turn = 0
  const spanBuffer = (size: number): Buffer => {
    if (!lend) return Buffer.allocUnsafe(size)
    turn ^= 1
    const b = spans[turn]
    return b && b.length >= size ? b.subarray(0, size) : (spans[turn] = Buffer.allocUnsafeSlow(size))
  }
  const checked = (c: Uint8Array) => {
    if (!b3Matches(c, chunks[i]!.digest)) {
      throw new IntegrityError(`blob ${b3Display(blob)} is corrupt: its chunk ${b3Display(chunks[i]!.digest)} does not match its digest`)
    }
    i++
    return c.length
  }
  for await (let piece of src) {
    if (span) {
      // The rest of a chunk begun in earlier pieces.
      const take = piece.subarray(0, span.length - have)
      span.set(take, have)
      have += take.length
      piece = piece.subarray(take.length)
      if (have < span.length) continue
      const whole = span
      span = undefined
      have = 0
      checked(whole)
      yield whole
    }
    let good = 0
    try {
      while (i < chunks.length && piece.length - good >= chunks[i]!.size) good += checked(piece.subarray(good, good + chunks[i]!.size))
    } catch (e) {
      // The chunks before the bad one are good: out they go.
      if (good > 0) yield piece.subarray(0, good)
      throw e
    }
    if (good > 0) yield piece.subarray(0, good)
    if (good < piece.length) {
      if (i === chunks.length) throw new IntegrityError(`blob ${b3Display(blob)} is corrupt: it has more bytes than its chunks`)
      span = spanBuffer(chunks[i]!.size)
      span.set(piece.subarray(good))
      have = piece.length - good
    }
  }
  if (i !== chunks.length) throw new IntegrityError(`blob ${b3Display(blob)} is corrupt: it has fewer bytes than its chunks`)
}

/** A whole blob already in memory: checked at once, so a mismatch fails before any byte is used. */
export function verifiedBuffer(digest: B3Digest, data: Uint8Array): AsyncIterable<Uint8Array> {
  return iterateSource(checkedBuffer(digest, data))
}

/** `data` itself once its BLAKE3 is `digest`; an IntegrityError otherwise. */
export function checkedBuffer<T extends Uint8Array>(digest: B3Digest, data: T): T {
  if (!b3Matches(data, digest)) throw new IntegrityError(`blob ${b3Display(digest)} is corrupt: its contents do not match its digest`)
  return data
}

/**
 * Optional capability of a BlobService that reads from this machine: a
 * blob found without a promise, a small one already read and checked
 * (the bytes), a larger one as open() gives it. A renderer walking a tree
 * of many small files then pays no await, thread-pool trip or generator
 * per file.
 */
export interface ImmediateReads {
  /**
   * `sizeHint`: the size the blob is expected to have (a file node's), which may save a syscall; the bytes are the true ones either way.
   * `lend`: the caller is done with each piece of a stream before it asks for the next, so pieces may share one reused buffer.
   */
  openNow(digest: B3Digest, sizeHint?: number, lend?: boolean): Uint8Array | AsyncIterable<Uint8Array> | undefined
  /** A small blob of exactly `size` bytes read into `into` at `at` (room for size + 1) and checked there; false if it cannot be (then openNow). */
  readInto?(digest: B3Digest, size: number, into: Uint8Array, at: number): boolean
}

export async function readAll(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const c of chunks) parts.push(c)
  return Buffer.concat(parts)
}
