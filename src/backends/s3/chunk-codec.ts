import { promisify } from 'node:util'
import zlib from 'node:zlib'
import { IntegrityError } from '../../errors.js'
import { MAX_VERIFIED_CHUNK } from '../../castore/blob-service.js'
import { type B3Digest, B3_LEN, b3Display } from '../../castore/digest.js'
import type { ChunkMeta } from '../../castore/blob-service.js'

/*
 * How chunks and chunk lists look at rest in the bucket.
 *
 * A chunk object is one tag byte and the chunk: 0 = stored as it is,
 * 1 = Brotli. Brotli at quality 1 (zlib, on the thread pool) compressed
 * /usr/include's headers to 0.23 and an executable to 0.45 of their size,
 * as well as deflate at level 1, at 1.6-6x its speed; a chunk that would
 * not shrink by an eighth is kept as it is (no work to read it back).
 *
 * A chunk list (a blob of two or more chunks) is its chunks in order,
 * each its BLAKE3 (32 bytes) and its size (4 bytes, big-endian).
 */

const RAW = 0
const BROTLI = 1
const brotli = promisify(zlib.brotliCompress)
const unbrotli = promisify(zlib.brotliDecompress)
const ENTRY = B3_LEN + 4

export async function encodeChunk(chunk: Uint8Array): Promise<Buffer> {
  const packed = await brotli(chunk, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: chunk.length } })
  if (packed.length < chunk.length - (chunk.length >> 3)) return Buffer.concat([Buffer.of(BROTLI), packed])
  return Buffer.concat([Buffer.of(RAW), chunk])
}

/** The chunk an object holds; `what` names it in errors. Never more than MAX_VERIFIED_CHUNK bytes come out. */
export async function decodeChunk(body: Buffer, what: string): Promise<Buffer> {
  const tag = body[0]
  if (tag === RAW && body.length - 1 <= MAX_VERIFIED_CHUNK) return body.subarray(1)
  if (tag === BROTLI) {
    try {
      return await unbrotli(body.subarray(1), { maxOutputLength: MAX_VERIFIED_CHUNK })
    } catch (e) {
      throw new IntegrityError(`${what} is corrupt: ${(e as Error).message}`)
    }
  }
  throw new IntegrityError(`${what} is corrupt: not a chunk object`)
}

export function encodeChunkList(chunks: ChunkMeta[]): Buffer {
  const out = Buffer.allocUnsafe(chunks.length * ENTRY)
  chunks.forEach((c, i) => {
    out.set(c.digest, i * ENTRY)
    out.writeUInt32BE(c.size, i * ENTRY + B3_LEN)
  })
  return out
}

export function decodeChunkList(body: Buffer, blob: B3Digest): ChunkMeta[] {
  if (body.length === 0 || body.length % ENTRY !== 0) throw new IntegrityError(`the chunk list of blob ${b3Display(blob)} is corrupt`)
  const chunks: ChunkMeta[] = []
  for (let at = 0; at < body.length; at += ENTRY) {
    const size = body.readUInt32BE(at + B3_LEN)
    if (size === 0 || size > MAX_VERIFIED_CHUNK) throw new IntegrityError(`the chunk list of blob ${b3Display(blob)} is corrupt`)
    chunks.push({ digest: Uint8Array.from(body.subarray(at, at + B3_LEN)), size })
  }
  return chunks
}
