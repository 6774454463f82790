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
 * not depend on how the input was read. Chunks inside one input buffer
 * are views into it; only a chunk spanning two or more buffers is copied,
 * once (inputs smaller than a window, as an HTTP body's 16–64 KiB pieces,
 * are kept as views until a window is full, not concatenated each time).
 */
export async function* chunkStream(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  /** Bytes not yet chunked, fewer than MAX_CHUNK in all: views of earlier inputs. */
  let tail: Uint8Array[] = []
  let tailLen = 0
  for await (const input of src) {
    let data = input
    // First finish the chunk that started in earlier input, through a small window.
    while (tailLen > 0 && tailLen + data.length >= MAX_CHUNK) {
      const take = MAX_CHUNK - tailLen
      // Always MAX_CHUNK bytes: one allocation size, which the heap reuses without fragmenting.
      const window = Buffer.allocUnsafe(MAX_CHUNK)
      let at = 0
      for (const t of tail) {
        window.set(t, at)
        at += t.length
      }
      window.set(data.subarray(0, take), tailLen)
      const n = cutPoint(window, 0, MAX_CHUNK)
      yield window.subarray(0, n)
      if (n < tailLen) {
        tail = [window.subarray(n, tailLen)]
        tailLen -= n
      } else {
        data = data.subarray(n - tailLen)
        tail = []
        tailLen = 0
      }
    }
    if (tailLen > 0) {
      tail.push(data)
      tailLen += data.length
      continue
    }
    let off = 0
    while (data.length - off >= MAX_CHUNK) {
      const n = cutPoint(data, off, data.length)
      yield data.subarray(off, off + n)
      off += n
    }
    if (off < data.length) {
      tail = [data.subarray(off)]
      tailLen = data.length - off
    }
  }
  const rest = tail.length === 1 ? tail[0]! : Buffer.concat(tail)
  let off = 0
  while (off < rest.length) {
    const n = cutPoint(rest, off, rest.length)
    yield rest.subarray(off, off + n)
    off += n
  }
}
