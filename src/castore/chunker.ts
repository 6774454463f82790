/**
 * Content-defined chunking (FastCDC-style: a Gear rolling hash, no cut
 * before MIN, normalised chunking around AVG, forced cut at MAX). Chunk
 * boundaries depend only on the bytes, so an edit inside a large file
 * changes the chunks around it and leaves the rest shared.
 *
 * The Gear table and masks are part of the store format: changing them
 * changes every boundary (and so all deduplication against older data).
 */
import { GearScanner } from './gear-scan.js'

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

/**
 * The length of the first chunk of buf[start, end) (all of it if no cut is
 * found within MAX_CHUNK). The definition of a boundary, in plain JS;
 * chunkStream runs the same loop compiled to WebAssembly (gear-scan.ts),
 * and a test holds the two to the same cuts.
 */
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

/** cutPoint over a scanner's bytes [start, end). */
function cutIn(s: GearScanner, start: number, end: number): number {
  const len = end - start
  if (len <= MIN_CHUNK) return len
  const limit = Math.min(len, MAX_CHUNK)
  const normal = Math.min(limit, AVG_CHUNK)
  let at = s.scan(start + MIN_CHUNK, start + normal, 0, MASK_SMALL)
  if (at < 0) at = s.scan(start + normal, start + limit, s.fp(), MASK_LARGE)
  return at < 0 ? limit : at - start
}

/** Input bytes copied into the scanner at once: with the bytes carried over, its memory is PIECE + MAX_CHUNK (held per stream being chunked, so per daemon upload: kept small). */
const PIECE = 256 << 10
/** Scanners kept from one stream to the next (fresh memory costs a page fault per 4 KiB touched). */
const KEEP_SCANNERS = 2
const scanners: GearScanner[] = []

/**
 * Splits a byte stream into content-defined chunks. A cut is only made
 * with a full MAX_CHUNK window in view (or at the end), so boundaries do
 * not depend on how the input was read.
 *
 * Buffers are borrowed both ways, so that nobody allocates per read: each
 * input is copied into the scanner's memory (up to PIECE at a time, after
 * the bytes not chunked yet), so no view of an input is kept once the next
 * is asked for and a source may reuse its buffer then; a yielded chunk is
 * a view of that memory, valid only until the next one is asked for. A
 * consumer that keeps a chunk copies it.
 */
export async function* chunkStream(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let s: GearScanner | undefined
  /** Bytes not chunked yet, at s.bytes[0, have). */
  let have = 0
  try {
    for await (const input of src) {
      for (let off = 0; off < input.length; ) {
        s ??= scanners.pop() ?? new GearScanner(GEAR, PIECE + MAX_CHUNK)
        const take = Math.min(input.length - off, PIECE + MAX_CHUNK - have)
        s.bytes.set(input.subarray(off, off + take), have)
        have += take
        off += take
        let at = 0
        while (have - at >= MAX_CHUNK) {
          const n = cutIn(s, at, have)
          yield s.bytes.subarray(at, at + n)
          at += n
        }
        if (at > 0) s.bytes.copyWithin(0, at, have)
        have -= at
      }
    }
    for (let at = 0; at < have; ) {
      const n = cutIn(s!, at, have)
      yield s!.bytes.subarray(at, at + n)
      at += n
    }
  } finally {
    // The consumer has asked for more or stopped: no chunk it was given is valid now.
    if (s && scanners.length < KEEP_SCANNERS) scanners.push(s)
  }
}
