import { IntegrityError } from '../errors.js'
import { type B3Digest, b3, b3Hasher, bytesEqual, b3Display } from './digest.js'

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

/** Content-addressed blob storage keyed by BLAKE3. */
export interface BlobService {
  has(digest: B3Digest): Promise<boolean>
  /** The blob's bytes, digest-checked as they are read, or undefined if absent. */
  open(digest: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined>
  /** Stores the bytes and returns the digest computed while writing. */
  put(src: ByteSource): Promise<BlobInfo>
  /**
   * Writes that stay invisible until commit(); abort() leaves the store as
   * it was. Backends that cannot stage write through (see writeThroughStage).
   */
  stage(): BlobStage
  /** The blob's chunks in order (empty if stored whole), undefined if absent; optional capability. */
  chunks?(digest: B3Digest): Promise<ChunkMeta[] | undefined>
  /**
   * The blob's size in bytes without reading its data, undefined if
   * absent; optional capability (a backend that cannot tell leaves it out,
   * and callers fall back to has()).
   */
  size?(digest: B3Digest): Promise<number | undefined>
  /** True when reads cross a network: worth fetching only the chunks one lacks. */
  readonly remote?: boolean
}

export interface BlobStage {
  put(src: ByteSource): Promise<BlobInfo>
  commit(): Promise<void>
  abort(): Promise<void>
}

/** A stage for backends without transactions: every put is final at once. */
export function writeThroughStage(blobs: Pick<BlobService, 'put'>): BlobStage {
  return { put: (src) => blobs.put(src), commit: async () => {}, abort: async () => {} }
}

export async function* iterateSource(src: ByteSource): AsyncGenerator<Uint8Array> {
  if (src instanceof Uint8Array) yield src
  else yield* src
}

/**
 * Passes chunks through and fails at the end unless their BLAKE3 equals
 * `digest`: every read path checks what it serves.
 */
export async function* verifyBlob(digest: B3Digest, chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const h = b3Hasher()
  for await (const c of chunks) {
    h.update(c)
    yield c
  }
  if (!bytesEqual(h.digest(), digest)) throw new IntegrityError(`blob ${b3Display(digest)} is corrupt: its contents do not match its digest`)
}

/** A whole blob already in memory: checked at once, so a mismatch fails before any byte is used. */
export function verifiedBuffer(digest: B3Digest, data: Uint8Array): AsyncIterable<Uint8Array> {
  if (!bytesEqual(b3(data), digest)) throw new IntegrityError(`blob ${b3Display(digest)} is corrupt: its contents do not match its digest`)
  return iterateSource(data)
}

export async function readAll(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const c of chunks) parts.push(c)
  return Buffer.concat(parts)
}
