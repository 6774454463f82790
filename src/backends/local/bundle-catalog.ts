/**
 * One index over many bundles (as git's multi-pack-index is over packs):
 * `blobs/bundles/catalog`. A store gains a bundle per import of more than
 * 16 small files, and finding a small blob meant reading every bundle's
 * index: `cat` of one file in a store of 300 bundles opened 340 files
 * (+50 ms of CPU, growing with every import). The catalog merges the
 * indexes of the bundles it names, so a lookup reads it and the
 * few bundles published since:
 *
 *   catalog = name[32]* fanout[256] entry* trailer
 *   name    = the BLAKE3 of a bundle's index (its file name), sorted
 *   entry   = digest[32] u64le(offset) u32le(size) u32le(bundle)   sorted by digest
 *   trailer = u32le(bundles) u32le(count) b3(all before the trailer)[32] "TVXCTLG1"
 *
 * It is derived data, never the only record of anything: written to
 * tmp/ and renamed over the last one (no sync: a catalog lost or torn by
 * a crash fails its BLAKE3 and is ignored, as a damaged one is), and
 * bundles it does not name are read one by one as before. A bundle it
 * names that is gone (gc compacted it: its live members are in a new
 * bundle, which it does not name) is skipped. Member bytes are checked
 * against their digest when read, as from any bundle.
 */
import fsSync from 'node:fs'
import { b3, bytesEqual } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import { type BundleIndex, ENTRY, FANOUT, type Member, compareAt, digestOrder } from './bundle.js'
import { onFile } from './io-errors.js'
import { readFull } from './pack.js'

const MAGIC = Buffer.from('TVXCTLG1')
const TRAILER = 4 + 4 + 32 + MAGIC.length
const NAME = 32
/** A bundle index entry and the number of its bundle in the catalog's names. */
const CATALOG_ENTRY = ENTRY + 4

export class BundleCatalog {
  private constructor(
    /** Hex names of the bundles it covers; entries refer to them by number. */
    readonly names: string[],
    /** Fanout and entries. */
    private readonly index: Buffer,
    readonly count: number,
  ) {}

  /** The checked catalog at `file`; undefined if there is none, an IntegrityError if it is damaged. */
  static read(file: string): BundleCatalog | undefined {
    let fd: number
    try {
      fd = fsSync.openSync(file, 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw onFile(e, file)
    }
    try {
      const bad = (why: string) => new IntegrityError(`bundle catalog ${file} is damaged: ${why}`)
      const size = fsSync.fstatSync(fd).size
      if (size < FANOUT + TRAILER) throw bad('it is truncated')
      const all = Buffer.allocUnsafe(size)
      if (readFull(fd, all, 0, file) !== size) throw bad('it is truncated')
      const trailer = all.subarray(size - TRAILER)
      if (!trailer.subarray(40).equals(MAGIC)) throw bad('it is not a catalog')
      const bundles = trailer.readUInt32LE(0)
      const count = trailer.readUInt32LE(4)
      if (bundles * NAME + FANOUT + count * CATALOG_ENTRY + TRAILER !== size) throw bad('its parts do not fit')
      if (!bytesEqual(b3(all.subarray(0, size - TRAILER)), trailer.subarray(8, 40))) throw bad('it does not match its digest')
      const index = all.subarray(bundles * NAME, size - TRAILER)
      if (index.readUInt32LE(255 * 4) !== count) throw bad('its fanout does not add up')
      const names = Array.from({ length: bundles }, (_, n) => all.toString('hex', n * NAME, (n + 1) * NAME))
      for (let e = 0; e < count; e++) if (index.readUInt32LE(FANOUT + e * CATALOG_ENTRY + ENTRY) >= bundles) throw bad('an entry names no bundle')
      return new BundleCatalog(names, index, count)
    } finally {
      fsSync.closeSync(fd)
    }
  }

  /**
   * Writes a catalog of `bundles` and of the entries of `from` whose
   * bundle `keep` accepts (a catalog's bundles still present), to the
   * new file `tmp`.
   */
  static write(tmp: string, bundles: BundleIndex[], from?: { catalog: BundleCatalog; keep: (n: number) => boolean }): void {
    const names: string[] = []
    const number = new Map<string, number>()
    const carried = from ? from.catalog.names.map((name, n) => (from.keep(n) ? name : undefined)) : []
    for (const name of [...carried, ...bundles.map((b) => b.name)]) if (name !== undefined && !number.has(name)) number.set(name, names.push(name) - 1)
    let count = bundles.reduce((c, b) => c + b.count, 0)
    if (from) for (let e = 0; e < from.catalog.count; e++) if (carried[from.catalog.bundleOf(e)] !== undefined) count++
    const entries = Buffer.allocUnsafe(count * CATALOG_ENTRY)
    let at = 0
    if (from) {
      for (let e = 0; e < from.catalog.count; e++) {
        const name = carried[from.catalog.bundleOf(e)]
        if (name === undefined) continue
        from.catalog.index.copy(entries, at, FANOUT + e * CATALOG_ENTRY, FANOUT + e * CATALOG_ENTRY + ENTRY)
        entries.writeUInt32LE(number.get(name)!, at + ENTRY)
        at += CATALOG_ENTRY
      }
    }
    for (const b of bundles) {
      b.copyEntries(entries, at, CATALOG_ENTRY)
      for (let i = 0; i < b.count; i++) entries.writeUInt32LE(number.get(b.name)!, at + i * CATALOG_ENTRY + ENTRY)
      at += b.count * CATALOG_ENTRY
    }
    const { order, ends } = digestOrder(entries, count, CATALOG_ENTRY)
    const out = Buffer.allocUnsafe(names.length * NAME + FANOUT + count * CATALOG_ENTRY + TRAILER)
    names.forEach((name, n) => out.write(name, n * NAME, 'hex'))
    const index = names.length * NAME
    for (let i = 0; i < 256; i++) out.writeUInt32LE(ends[i]!, index + i * 4)
    order.forEach((e, i) => entries.copy(out, index + FANOUT + i * CATALOG_ENTRY, e * CATALOG_ENTRY, (e + 1) * CATALOG_ENTRY))
    const end = out.length - TRAILER
    out.writeUInt32LE(names.length, end)
    out.writeUInt32LE(count, end + 4)
    out.set(b3(out.subarray(0, end)), end + 8)
    MAGIC.copy(out, end + 40)
    fsSync.writeFileSync(tmp, out, { flag: 'wx', mode: 0o444 })
  }

  /** The bundle number of entry `e`. */
  private bundleOf(e: number): number {
    return this.index.readUInt32LE(FANOUT + e * CATALOG_ENTRY + ENTRY)
  }

  /** Member `digest` in the first bundle holding it that `present` accepts (by number), or undefined. */
  find(digest: Uint8Array, present: (n: number) => boolean): { bundle: number; member: Member } | undefined {
    const first = digest[0]!
    let lo = first === 0 ? 0 : this.index.readUInt32LE((first - 1) * 4)
    let hi = this.index.readUInt32LE(first * 4)
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareAt(this.index, FANOUT + mid * CATALOG_ENTRY, digest) < 0) lo = mid + 1
      else hi = mid
    }
    // The first entry not below `digest`, then the others of the same digest (a blob two imports bundled at once).
    for (let e = lo; e < this.count && compareAt(this.index, FANOUT + e * CATALOG_ENTRY, digest) === 0; e++) {
      const bundle = this.bundleOf(e)
      if (!present(bundle)) continue
      const at = FANOUT + e * CATALOG_ENTRY
      return { bundle, member: { offset: this.index.readUInt32LE(at + 36) * 0x1_0000_0000 + this.index.readUInt32LE(at + 32), size: this.index.readUInt32LE(at + 40) } }
    }
    return undefined
  }
}
