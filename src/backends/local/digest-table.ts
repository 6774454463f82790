/**
 * Which of many digest lists (the bundles' indexes) may hold a digest, in
 * one probe: a hash table from a digest's first 8 bytes to the number of a
 * list, open addressing over typed arrays (24-48 bytes a member, no object
 * per member: a million small blobs cost at most ~48 MB).
 *
 * A store gains a bundle per import of more than a few small files, so
 * asking every bundle in turn made each small-blob lookup cost one binary
 * search per bundle: an import of 2,000 new files into a store of 313
 * bundles spent 80 ms searching. The caller confirms a candidate with the
 * list's own search; 8 bytes make a false candidate rare, and the slot
 * comes from a hash seeded per process, so digests ground to share bits
 * (a daemon stores what its clients send) cannot pile into one run of the
 * table.
 */
export class DigestTable {
  private lo = new Uint32Array(0)
  private hi = new Uint32Array(0)
  /** The list's number + 1; 0 marks a free slot. */
  private lists = new Uint32Array(0)
  private mask = 0
  /** 32 - log2(capacity): the slot is the top bits of a product, which depend on every bit of the key. */
  private shift = 32
  private count = 0
  // Not node:crypto: loading it would cost start-up of commands that never look up a bundle; the seeds are never shown.
  private readonly seedLo = (Math.random() * 2 ** 32) >>> 0
  private readonly seedHi = (Math.random() * 2 ** 32) >>> 0

  get size(): number {
    return this.count
  }

  /** Makes room for `more` further keys at once (one allocation, not a doubling at each power of two). */
  reserve(more: number): void {
    let capacity = Math.max(1024, this.lists.length)
    while ((this.count + more) * 2 > capacity) capacity *= 2
    if (capacity > this.lists.length) this.grow(capacity)
  }

  /**
   * Records that list `list` holds `count` digests, whose first 8 bytes
   * are at `start`, `start + stride`, … of `bytes` (a bundle's index as
   * it lies: one loop, no call per member).
   */
  addAll(bytes: Buffer, start: number, stride: number, count: number, list: number): void {
    this.reserve(count)
    for (let i = 0, at = start; i < count; i++, at += stride) this.insert(bytes.readUInt32LE(at), bytes.readUInt32LE(at + 4), list + 1)
  }

  /** Each list recorded for `digest`'s first 8 bytes, in turn, until `check` returns something: that. */
  find<T>(digest: Uint8Array, check: (list: number) => T | undefined): T | undefined {
    if (this.count === 0) return undefined
    const lo = u32At(digest, 0)
    const hi = u32At(digest, 4)
    for (let i = this.slot(lo, hi); this.lists[i] !== 0; i = (i + 1) & this.mask) {
      if (this.lo[i] !== lo || this.hi[i] !== hi) continue
      const found = check(this.lists[i]! - 1)
      if (found !== undefined) return found
    }
    return undefined
  }

  clear(): void {
    this.lo = new Uint32Array(0)
    this.hi = new Uint32Array(0)
    this.lists = new Uint32Array(0)
    this.mask = 0
    this.shift = 32
    this.count = 0
  }

  private slot(lo: number, hi: number): number {
    return (Math.imul(lo ^ this.seedLo, 0x9e3779b1) ^ Math.imul(hi ^ this.seedHi, 0x85ebca77)) >>> this.shift
  }

  private insert(lo: number, hi: number, tagged: number): void {
    let i = this.slot(lo, hi)
    while (this.lists[i] !== 0) i = (i + 1) & this.mask
    this.lo[i] = lo
    this.hi[i] = hi
    this.lists[i] = tagged
    this.count++
  }

  private grow(capacity: number): void {
    const [lo, hi, lists] = [this.lo, this.hi, this.lists]
    this.lo = new Uint32Array(capacity)
    this.hi = new Uint32Array(capacity)
    this.lists = new Uint32Array(capacity)
    this.mask = capacity - 1
    this.shift = 32 - Math.log2(capacity)
    this.count = 0
    for (let i = 0; i < lists.length; i++) if (lists[i] !== 0) this.insert(lo[i]!, hi[i]!, lists[i]!)
  }
}

const u32At = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0
