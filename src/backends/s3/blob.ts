import { type BlobInfo, type BlobService, type ByteSource, type ChunkMeta, abortableSource, checkedBuffer, iterateSource, verifyBlob } from '../../castore/blob-service.js'
import { chunkStream } from '../../castore/chunker.js'
import { type B3Digest, b3, b3Display, b3Hasher, bytesEqual, requireDigestLength, toHex } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import type { CallOptions } from '../../util/call-options.js'
import { inOrder } from '../../util/pool.js'
import { decodeChunk, decodeChunkList, encodeChunk, encodeChunkList } from './chunk-codec.js'
import type { S3Client } from './client.js'
import { CHUNKS, type ChunkInventory, LISTS, S3ChunkInventory } from './inventory.js'

/*
 * Blobs in an S3 bucket, chunked and deduplicated as in the local store:
 *
 *   chunks/<hex>   a content-defined chunk, named by its BLAKE3 (chunk-codec.ts);
 *                  a blob of one chunk is only this object (its digest is the chunk's)
 *   blobs/<hex>    the chunk list of a blob of two or more chunks
 *
 * Both carry the raw size as metadata, so has() and size() are one HEAD.
 * A blob's list is written after all its chunks, so a blob that can be
 * found can be read whole. Objects are written with If-None-Match: *: a
 * chunk two releases share is stored once, and nothing is overwritten.
 * Every chunk is BLAKE3-checked when it is read back, before any of its
 * bytes are handed on, and the whole blob against its digest at the end.
 */

/** Chunk uploads or downloads in flight per blob: bounds memory to a few MAX_CHUNKs and hides the round trips. */
const IN_FLIGHT = 8

const chunkKey = (d: B3Digest) => CHUNKS + toHex(d)
const listKey = (d: B3Digest) => LISTS + toHex(d)

/**
 * How a store with gc sees this service's writes (postgres/sessions.ts):
 * a put is a write session, every object it found or wrote is relied on,
 * and a chunk list is published in a commit (sweeps excluded), so a sweep
 * never runs between a list's publication and gc's listing of the lists.
 */
export interface PublishGuard {
  session<T>(fn: () => Promise<T>): Promise<T>
  rely(key: string): void
  commit<T>(fn: () => Promise<T>): Promise<T>
}

export class S3BlobService implements BlobService {
  private guard: PublishGuard | undefined

  constructor(readonly s3: S3Client) {}

  /** Called once by the store that collects this bucket's garbage. */
  attachGuard(guard: PublishGuard): void {
    this.guard = guard
  }

  /** The objects one by one, for verify. */
  inventory(): ChunkInventory {
    return new S3ChunkInventory(this.s3)
  }

  async has(d: B3Digest, opts?: CallOptions): Promise<boolean> {
    return (await this.size(d, opts)) !== undefined
  }

  async size(d: B3Digest, opts?: CallOptions): Promise<number | undefined> {
    requireDigestLength(d)
    let key = chunkKey(d)
    let meta = await this.s3.head(key, opts)
    if (!meta) meta = await this.s3.head((key = listKey(d)), opts)
    if (!meta) return undefined
    this.guard?.rely(key)
    const size = Number(meta.size)
    if (!Number.isSafeInteger(size) || size < 0) throw new IntegrityError(`blob ${b3Display(d)} in S3 has no valid size`)
    return size
  }

  async chunks(d: B3Digest, opts?: CallOptions): Promise<ChunkMeta[] | undefined> {
    requireDigestLength(d)
    // Most blobs are one chunk (small files): one HEAD answers for them.
    if (await this.s3.head(chunkKey(d), opts)) return []
    const list = await this.s3.get(listKey(d), opts)
    return list ? decodeChunkList(list.body, d) : undefined
  }

  async open(d: B3Digest, opts?: CallOptions): Promise<AsyncIterable<Uint8Array> | undefined> {
    requireDigestLength(d)
    const whole = await this.s3.get(chunkKey(d), opts)
    if (whole) return iterateSource(checkedBuffer(d, await decodeChunk(whole.body, `blob ${b3Display(d)}`)))
    const list = await this.s3.get(listKey(d), opts)
    return list && verifyBlob(d, this.readChunks(d, decodeChunkList(list.body, d), opts))
  }

  /** The chunks in order, fetched IN_FLIGHT ahead, each checked against its digest before it is yielded. */
  private async *readChunks(blob: B3Digest, chunks: ChunkMeta[], opts?: CallOptions): AsyncGenerator<Uint8Array> {
    const fetch = async (c: ChunkMeta): Promise<Buffer> => {
      const what = `chunk ${b3Display(c.digest)} of blob ${b3Display(blob)}`
      const obj = await this.s3.get(chunkKey(c.digest), opts)
      if (!obj) throw new IntegrityError(`${what} is missing from S3`)
      const data = await decodeChunk(obj.body, what)
      if (data.length !== c.size || !bytesEqual(b3(data), c.digest)) throw new IntegrityError(`blob ${b3Display(blob)} is corrupt: its ${what.split(' of ')[0]} does not match its digest`)
      return data
    }
    yield* inOrder(chunks, IN_FLIGHT, fetch)
  }

  async put(src: ByteSource, opts?: CallOptions): Promise<BlobInfo> {
    return this.guard ? this.guard.session(() => this.write(src, opts)) : this.write(src, opts)
  }

  /** Creates `key` unless it is there; either way the session relies on it. */
  private async putObject(key: string, body: Uint8Array, size: number, opts?: CallOptions): Promise<void> {
    await this.s3.putIfAbsent(key, body, { size: String(size) }, opts)
    this.guard?.rely(key)
  }

  private async write(src: ByteSource, opts?: CallOptions): Promise<BlobInfo> {
    const whole = b3Hasher()
    const chunks: ChunkMeta[] = []
    const uploads = new Set<Promise<void>>()
    let failed: unknown
    const upload = (digest: B3Digest, chunk: Uint8Array) => {
      // A copy: the source may reuse its buffer once we ask for the next piece, and compression runs later on the thread pool.
      const own = Buffer.from(chunk)
      const p = encodeChunk(own)
        .then((body) => this.putObject(chunkKey(digest), body, own.length, opts))
        .then(
          () => {},
          (e) => {
            failed ??= e
          },
        )
        .finally(() => uploads.delete(p))
      uploads.add(p)
    }
    let size = 0
    for await (const c of chunkStream(iterateSource(abortableSource(src, opts)))) {
      if (failed) break
      const digest = b3(c)
      whole.update(c)
      chunks.push({ digest, size: c.length })
      size += c.length
      upload(digest, c)
      while (uploads.size >= IN_FLIGHT) await Promise.race(uploads)
    }
    while (uploads.size > 0) await Promise.race(uploads)
    if (failed) throw failed
    const digest = whole.digest()
    if (chunks.length === 0) {
      // The empty blob: an empty chunk, so that has() finds it like any other.
      await this.putObject(chunkKey(digest), await encodeChunk(new Uint8Array(0)), 0, opts)
    } else if (chunks.length > 1) {
      const list = encodeChunkList(chunks)
      const publish = () => this.putObject(listKey(digest), list, size, opts)
      await (this.guard ? this.guard.commit(publish) : publish())
    }
    return { digest, size }
  }
}
