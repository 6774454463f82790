import { inOrder } from '../util/pool.js'
import { type BlobInfo, type BlobService, type ChunkMeta, type OpenOptions, readAll } from './blob-service.js'
import { type B3Digest, b3Display } from './digest.js'
import { NotFoundError } from '../errors.js'
import type { CallOptions } from '../util/call-options.js'

/*
 * A blob moved by its chunk list: the target says which chunks it lacks,
 * only those are read from the source, and the target writes the blob from
 * the chunks as listed instead of cutting the bytes into chunks again.
 */

/**
 * The bytes of the chunks a writer asks for (`wanted`: a subsequence of the
 * blob's chunk list, in order), back to back, in pieces of any size. The
 * writer checks each chunk against its digest as it arrives, and is done
 * with each piece (it copied what it keeps) before it asks for the next:
 * pieces may be lent (OpenOptions).
 */
export type ChunkFetch = ((wanted: ChunkMeta[]) => AsyncIterable<Uint8Array>) & {
  /**
   * From a store on this machine (PackFiles), the file that holds the
   * whole blob as a pack, for a writer that copies the file instead of
   * its bytes and then checks the copy. `taken()` once it did (its bytes
   * count as read from the source).
   */
  packFile?: { file: string; taken(): void }
}

/**
 * Optional capability of a BlobService on this machine: the file holding
 * blob `d` as a sealed pack with every chunk in it (nothing borrowed from
 * another pack), which another local store may copy whole; undefined for
 * any other blob.
 */
export interface PackFiles {
  packFile(d: B3Digest): string | undefined
}

/**
 * Optional capability of a BlobStage: blob `digest` written from its chunk
 * list. Chunks the store holds are neither fetched nor written again; each
 * fetched chunk is checked against its digest before it is written, and
 * the whole blob against `digest` before the stage may publish it.
 * Undefined when the store does not write this blob that way (a small one):
 * the caller puts it whole.
 */
export interface ChunkedPuts {
  putChunks(digest: B3Digest, chunks: ChunkMeta[], fetch: ChunkFetch, opts?: CallOptions): Promise<BlobInfo | undefined>
}

export function hasChunkedPuts<T extends object>(stage: T): stage is T & ChunkedPuts {
  return typeof (stage as Partial<ChunkedPuts>).putChunks === 'function'
}

/**
 * Optional capability of a BlobService: a blob's or a chunk's bytes as
 * stored, not hashed, for a ChunkedPuts writer that checks every chunk and
 * the whole blob itself (else each byte is hashed twice, by the reader and
 * by the writer). Undefined when the store does not read this one that way
 * (then open()); nothing else may use what it gives.
 */
export interface UncheckedReads {
  readUnchecked(digest: B3Digest, opts?: OpenOptions): Promise<AsyncIterable<Uint8Array> | undefined>
}

/** Reads `d` for a writer that checks what it gets: unchecked where `from` offers that, else open()'s checked bytes. */
async function readForChecker(from: BlobService, d: B3Digest, opts?: OpenOptions): Promise<AsyncIterable<Uint8Array> | undefined> {
  const unchecked = (from as Partial<UncheckedReads>).readUnchecked
  return (unchecked && (await unchecked.call(from, d, opts))) ?? from.open(d, opts)
}

/** Chunk reads in flight when single chunks are fetched: enough to hide a daemon's round trip, each chunk at most MAX_VERIFIED_CHUNK. */
const CHUNKS_IN_FLIGHT = 16

/**
 * A ChunkFetch reading from `from`: every chunk wanted is one read of the
 * whole blob (one stream); some of them, each read by its own digest
 * (which tvix serves through Read too), a few at once, in order.
 * `fetched` counts the bytes read.
 */
export function chunksFrom(from: BlobService, blob: B3Digest, chunks: ChunkMeta[], fetched: (bytes: number) => void): ChunkFetch {
  const fetch: ChunkFetch = async function* (wanted) {
    if (wanted.length === 0) return
    const missing = (what: string) => new NotFoundError(`${what} is missing from the source store`)
    if (wanted.length === chunks.length) {
      // One stream, each piece done with before the next (ChunkFetch): lent.
      const src = await readForChecker(from, blob, { lend: true })
      if (!src) throw missing(`blob ${b3Display(blob)}`)
      for await (const piece of src) {
        fetched(piece.length)
        yield piece
      }
      return
    }
    for await (const data of inOrder(wanted, CHUNKS_IN_FLIGHT, async (c) => {
      const src = await readForChecker(from, c.digest)
      if (!src) throw missing(`chunk ${b3Display(c.digest)} of blob ${b3Display(blob)}`)
      return readAll(src)
    })) {
      fetched(data.length)
      yield data
    }
  }
  const file = (from as Partial<PackFiles>).packFile?.(blob)
  if (file !== undefined) fetch.packFile = { file, taken: () => fetched(chunks.reduce((n, c) => n + c.size, 0)) }
  return fetch
}
