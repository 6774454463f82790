/**
 * Tables of entries sorted by a 32-byte digest with a 256-entry fanout
 * (git's pack index layout), as bundle indexes and catalogs store them:
 * the sort that builds one and the comparison that searches it.
 */

/** The fanout: u32le, entries whose digest's first byte is <= i. */
export const FANOUT = 256 * 4

/** A bucket of one first byte longer than this is sorted by the engine's sort (n log n whatever the digests), a shorter one in place. */
const INSERTION_MAX = 16

/**
 * The `members` entries of `entries` (`stride` bytes each, the digest
 * first) in digest order (their numbers), and the fanout: where each first byte's entries end. A counting sort on the
 * first byte, then each bucket on the whole digest: BLAKE3 digests spread
 * evenly, so a bucket holds a few entries (~8 for 2,000 members), which an
 * insertion sort orders at once. A typed array's sort with a comparator took
 * ~14 ms for 2,000 entries here, the counting sort 0.5 ms; a bucket made
 * long on purpose (digests ground to share a first byte) still sorts in
 * n log n.
 */
export function digestOrder(entries: Buffer, members: number, stride: number): { order: Uint32Array; ends: Uint32Array } {
  const ends = new Uint32Array(256)
  for (let e = 0; e < members; e++) ends[entries[e * stride]!]!++
  for (let i = 1; i < 256; i++) ends[i]! += ends[i - 1]!
  const next = new Uint32Array(256)
  next.set(ends.subarray(0, 255), 1)
  const order = new Uint32Array(members)
  for (let e = 0; e < members; e++) order[next[entries[e * stride]!]!++] = e
  const before = (a: number, b: number) => compareAt(entries, a * stride, entries, b * stride)
  for (let k = 0, lo = 0; k < 256; lo = ends[k++]!) {
    const hi = ends[k]!
    if (hi - lo > INSERTION_MAX) {
      order.subarray(lo, hi).sort(before)
      continue
    }
    for (let i = lo + 1; i < hi; i++) {
      const e = order[i]!
      let j = i
      for (; j > lo && before(order[j - 1]!, e) > 0; j--) order[j] = order[j - 1]!
      order[j] = e
    }
  }
  return { order, ends }
}

/** `index[at..at+32]` against `digest[from..from+32]`, bytewise. */
export function compareAt(index: Buffer, at: number, digest: Uint8Array, from = 0): number {
  for (let i = 0; i < 32; i++) {
    const d = index[at + i]! - digest[from + i]!
    if (d !== 0) return d
  }
  return 0
}
