/**
 * Content-defined chunking (FastCDC-style: a Gear rolling hash, no cut
 * before MIN, normalised chunking around AVG, forced cut at MAX). Chunk
 * boundaries depend only on the bytes, so an edit inside a large file
 * changes the chunks around it and leaves the rest shared.
 *
 * The Gear table and masks are part of the store format: changing them
 * changes every boundary (and so all deduplication against older data).
 */
export const MIN_CHUNK = 16 * 1024
export const AVG_CHUNK = 64 * 1024
export const MAX_CHUNK = 256 * 1024

// 2 more mask bits below AVG, 2 fewer above (normalisation level 2), on the
// high end of the 32-bit hash, where the most bytes have contributed.
const MASK_SMALL = 0xffffc000 | 0 // 18 bits
const MASK_LARGE = 0xfffc0000 | 0 // 14 bits

const GEAR = (() => {
  // Fixed seed: a splitmix-style generator, deterministic across versions.
  const t = new Int32Array(256)
  let s = 0x9e3779b9
  for (let i = 0; i < 256; i++) {
    s = (s + 0x6d2b79f5) | 0
    let z = s
    z = Math.imul(z ^ (z >>> 15), z | 1)
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61)
    t[i] = z ^ (z >>> 14)
  }
  return t
})()

/** The length of the first chunk of `buf` (all of it if no cut is found and `final`). */
export function cutPoint(buf: Uint8Array, start: number, end: number): number {
  const len = end - start
  if (len <= MIN_CHUNK) return len
  const limit = Math.min(len, MAX_CHUNK)
  const normal = Math.min(limit, AVG_CHUNK)
  let fp = 0
  let i = start + MIN_CHUNK
  for (const stop = start + normal; i < stop; i++) {
    fp = ((fp << 1) + GEAR[buf[i]!]!) | 0
    if ((fp & MASK_SMALL) === 0) return i + 1 - start
  }
  for (const stop = start + limit; i < stop; i++) {
    fp = ((fp << 1) + GEAR[buf[i]!]!) | 0
    if ((fp & MASK_LARGE) === 0) return i + 1 - start
  }
  return limit
}

/**
 * Splits a byte stream into content-defined chunks. Holds at most
 * MAX_CHUNK plus one input chunk in memory.
 */
export async function* chunkStream(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let buf = Buffer.alloc(0)
  for await (const data of src) {
    buf = buf.length === 0 ? Buffer.from(data) : Buffer.concat([buf, data])
    let off = 0
    // Cut only while a full MAX_CHUNK window is available: a cut must not depend on read sizes.
    while (buf.length - off >= MAX_CHUNK) {
      const n = cutPoint(buf, off, buf.length)
      yield buf.subarray(off, off + n)
      off += n
    }
    buf = buf.subarray(off)
  }
  let off = 0
  while (off < buf.length) {
    const n = cutPoint(buf, off, buf.length)
    yield buf.subarray(off, off + n)
    off += n
  }
}
