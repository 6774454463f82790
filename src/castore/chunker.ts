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
 * Splits a byte stream into content-defined chunks. A cut is only made
 * with a full MAX_CHUNK window in view (or at the end), so boundaries do
 * not depend on how the input was read.
 *
 * Buffers are borrowed both ways, so that nobody allocates per read: a
 * yielded chunk is valid only until the next one is asked for (a view of
 * the input, or of the chunker's own window, which it reuses), and no
 * view of an input is kept once the next input is asked for (the bytes
 * not yet chunked are copied into the window, each byte at most once), so
 * a source may reuse its buffer then. A consumer that keeps a chunk
 * copies it.
 */
export async function* chunkStream(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  /** Bytes not yet chunked from earlier inputs, fewer than MAX_CHUNK, at window[0, tailLen). */
  let window: Buffer | undefined
  let tailLen = 0
  for await (const data of src) {
    let off = 0
    // First finish the chunk that started in earlier input, through the window.
    while (tailLen > 0 && tailLen + data.length - off >= MAX_CHUNK) {
      const w = window!
      w.set(data.subarray(off, off + MAX_CHUNK - tailLen), tailLen)
      const n = cutPoint(w, 0, MAX_CHUNK)
      yield w.subarray(0, n)
      if (n < tailLen) {
        w.copyWithin(0, n, tailLen)
        tailLen -= n
      } else {
        off += n - tailLen
        tailLen = 0
      }
    }
    if (tailLen === 0) {
      while (data.length - off >= MAX_CHUNK) {
        const n = cutPoint(data, off, data.length)
        yield data.subarray(off, off + n)
        off += n
      }
    }
    if (off < data.length) {
      window ??= Buffer.allocUnsafe(MAX_CHUNK)
      window.set(data.subarray(off), tailLen)
      tailLen += data.length - off
    }
  }
  for (let off = 0; off < tailLen; ) {
    const n = cutPoint(window!, off, tailLen)
    yield window!.subarray(off, off + n)
    off += n
  }
}
