import type { ChunkMeta } from '../../castore/blob-service.js'
import { b3Display } from '../../castore/digest.js'
import type { CallOptions } from '../../util/call-options.js'
import { decodeChunk, decodeChunkList } from './chunk-codec.js'
import type { S3Client } from './client.js'

/*
 * The objects behind a chunked blob service, one by one, for verify: what
 * is stored (by listing, not by the blobs a reader asks for), each
 * object's content as stored with the size recorded beside it, and
 * removal. Reads here check nothing beyond decoding: judging is the
 * verifier's.
 */

/** A stored object's content and the raw size its metadata records (NaN when it records none). */
export interface StoredChunk {
  data: Buffer
  recordedSize: number
}

export interface StoredChunkList {
  chunks: ChunkMeta[]
  recordedSize: number
}

export interface ChunkInventory {
  /** Where the objects are, for messages. */
  readonly where: string
  /** Hex digests of every chunk object (a blob of one chunk is its chunk). */
  chunkNames(opts?: CallOptions): AsyncIterable<string>
  /** Hex digests of every blob stored as a chunk list. */
  listNames(opts?: CallOptions): AsyncIterable<string>
  /** Undefined if absent; an IntegrityError if the object is not a chunk. */
  readChunk(hex: string, opts?: CallOptions): Promise<StoredChunk | undefined>
  /** Undefined if absent; an IntegrityError if the object is not a chunk list. */
  readList(hex: string, opts?: CallOptions): Promise<StoredChunkList | undefined>
  removeChunk(hex: string, opts?: CallOptions): Promise<void>
  removeList(hex: string, opts?: CallOptions): Promise<void>
}

export function hasChunkInventory(blobs: object): blobs is { inventory(): ChunkInventory } {
  return typeof (blobs as { inventory?: unknown }).inventory === 'function'
}

export const CHUNKS = 'chunks/'
export const LISTS = 'blobs/'

const display = (hex: string) => b3Display(Buffer.from(hex, 'hex'))

export class S3ChunkInventory implements ChunkInventory {
  readonly where: string

  constructor(private readonly s3: S3Client) {
    this.where = `s3://${s3.addr.bucket}${s3.addr.prefix ? `/${s3.addr.prefix}` : ''}`
  }

  chunkNames(opts?: CallOptions): AsyncIterable<string> {
    return this.names(CHUNKS, opts)
  }

  listNames(opts?: CallOptions): AsyncIterable<string> {
    return this.names(LISTS, opts)
  }

  async readChunk(hex: string, opts?: CallOptions): Promise<StoredChunk | undefined> {
    const obj = await this.s3.get(CHUNKS + hex, opts)
    return obj && { data: await decodeChunk(obj.body, `chunk ${display(hex)}`), recordedSize: Number(obj.meta.size ?? NaN) }
  }

  async readList(hex: string, opts?: CallOptions): Promise<StoredChunkList | undefined> {
    const obj = await this.s3.get(LISTS + hex, opts)
    return obj && { chunks: decodeChunkList(obj.body, Buffer.from(hex, 'hex')), recordedSize: Number(obj.meta.size ?? NaN) }
  }

  removeChunk(hex: string, opts?: CallOptions): Promise<void> {
    return this.s3.delete(CHUNKS + hex, opts)
  }

  removeList(hex: string, opts?: CallOptions): Promise<void> {
    return this.s3.delete(LISTS + hex, opts)
  }

  /** Only names that are digests: anything else under the prefix is not ours to judge. */
  private async *names(under: string, opts?: CallOptions): AsyncIterable<string> {
    for await (const key of this.s3.keys(under, opts)) {
      const name = key.slice(under.length)
      if (/^[0-9a-f]{64}$/.test(name)) yield name
    }
  }
}
