/**
 * A catalog: one sorted index over the indexes of many files (as git's
 * multi-pack-index is over packs), so that a lookup reads one file
 * instead of every file's own index. Derived data, never the only
 * record of anything: a reader checks it whole against its BLAKE3 and
 * ignores a damaged one; files it names that are gone are skipped by the
 * caller, files it does not name are read one by one as before.
 *
 *   catalog = owner[32]* fanout[256] entry* trailer
 *   owner   = the hex name of a file it covers (a BLAKE3 digest), as bytes
 *   fanout  = u32le: entries whose first byte is <= i
 *   entry   = digest[32] fields u32le(owner)        `stride` bytes, sorted by digest
 *   trailer = u32le(owners) u32le(count) b3(all before the trailer)[32] magic[8]
 *
 * What the fields between digest and owner hold is the user's (a bundle
 * member's offset and size, a chunk's place in its pack).
 */
import fsSync from 'node:fs'
import { b3, bytesEqual } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import { readIfPresent } from './io-errors.js'
import type { LocalRoot } from './layout.js'
import { readFull } from './pack.js'
import { FANOUT, compareAt, digestOrder } from './sorted-digests.js'

const NAME = 32
const TRAILER = 4 + 4 + 32 + 8

export interface CatalogFormat {
  /** 8 bytes that end the file. */
  magic: Buffer
  /** Bytes per entry: the digest, the user's fields, the owner number (u32le, last). */
  stride: number
  /** What a damaged one is called in errors. */
  what: string
}

export class Catalog {
  private constructor(
    readonly format: CatalogFormat,
    /** Hex names of the files it covers; entries refer to them by number. */
    readonly owners: string[],
    /** Fanout and entries. */
    private readonly index: Buffer,
    readonly count: number,
  ) {}

  /** The checked catalog at `file`; undefined if there is none, an IntegrityError if it is damaged. */
  static read(file: string, format: CatalogFormat): Catalog | undefined {
    return readIfPresent(file, (fd) => {
      const bad = (why: string) => new IntegrityError(`${format.what} ${file} is damaged: ${why}`)
      const size = fsSync.fstatSync(fd).size
      if (size < FANOUT + TRAILER) throw bad('it is truncated')
      const all = Buffer.allocUnsafe(size)
      if (readFull(fd, all, 0, file) !== size) throw bad('it is truncated')
      const trailer = all.subarray(size - TRAILER)
      if (!trailer.subarray(40).equals(format.magic)) throw bad(`it is not a ${format.what}`)
      const owners = trailer.readUInt32LE(0)
      const count = trailer.readUInt32LE(4)
      if (owners * NAME + FANOUT + count * format.stride + TRAILER !== size) throw bad('its parts do not fit')
      if (!bytesEqual(b3(all.subarray(0, size - TRAILER)), trailer.subarray(8, 40))) throw bad('it does not match its digest')
      const index = all.subarray(owners * NAME, size - TRAILER)
      if (index.readUInt32LE(255 * 4) !== count) throw bad('its fanout does not add up')
      const catalog = new Catalog(format, Array.from({ length: owners }, (_, n) => all.toString('hex', n * NAME, (n + 1) * NAME)), index, count)
      for (let e = 0; e < count; e++) if (catalog.ownerOf(e) >= owners) throw bad('an entry names no file')
      return catalog
    })
  }

  /** The owner number of entry `e`. */
  ownerOf(e: number): number {
    return this.index.readUInt32LE(FANOUT + (e + 1) * this.format.stride - 4)
  }

  /** Entry `e`: its bytes (digest, fields, owner), a view valid while the catalog is. */
  entry(e: number): Buffer {
    return this.index.subarray(FANOUT + e * this.format.stride, FANOUT + (e + 1) * this.format.stride)
  }

  /** The first entry for `digest` whose owner `present` accepts (a digest two files hold has an entry each), or undefined. */
  find(digest: Uint8Array, present: (owner: number) => boolean): number | undefined {
    const { stride } = this.format
    const first = digest[0]!
    let lo = first === 0 ? 0 : this.index.readUInt32LE((first - 1) * 4)
    let hi = this.index.readUInt32LE(first * 4)
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareAt(this.index, FANOUT + mid * stride, digest) < 0) lo = mid + 1
      else hi = mid
    }
    for (let e = lo; e < this.count && compareAt(this.index, FANOUT + e * stride, digest) === 0; e++) if (present(this.ownerOf(e))) return e
    return undefined
  }
}

/** Gathers a new catalog's entries: those carried over from the last one, then each new file's. */
export class CatalogBuilder {
  private readonly owners: string[] = []
  private readonly numbers = new Map<string, number>()
  private entries: Buffer
  private count = 0

  constructor(
    private readonly format: CatalogFormat,
    expected = 1024,
  ) {
    this.entries = Buffer.allocUnsafe(Math.max(1, expected) * format.stride)
  }

  /** The entries of `from` whose owner `keep` accepts (the files of the last catalog still there). */
  carry(from: Catalog, keep: (owner: number) => boolean): void {
    for (let e = 0; e < from.count; e++) {
      const owner = from.ownerOf(e)
      if (keep(owner)) this.add(from.owners[owner]!, from.entry(e))
    }
  }

  /** An entry of file `owner`: `fields` is the digest and the user's fields (its first stride - 4 bytes are used). */
  add(owner: string, fields: Uint8Array): void {
    let n = this.numbers.get(owner)
    if (n === undefined) this.numbers.set(owner, (n = this.owners.push(owner) - 1))
    const { stride } = this.format
    if ((this.count + 1) * stride > this.entries.length) {
      const grown = Buffer.allocUnsafe(this.entries.length * 2)
      this.entries.copy(grown, 0, 0, this.count * stride)
      this.entries = grown
    }
    const at = this.count++ * stride
    this.entries.set(fields.subarray(0, stride - 4), at)
    this.entries.writeUInt32LE(n, at + stride - 4)
  }

  /**
   * Writes the catalog to a temp file of `root` and renames it to `final`
   * (not synced: a torn one fails its BLAKE3). False if that failed (a
   * full disk, say), with nothing left behind: it is only ever a shortcut.
   */
  async publish(root: LocalRoot, final: string): Promise<boolean> {
    const tmp = root.tempPath()
    try {
      this.write(tmp)
      await root.publish(tmp, final)
      return true
    } catch {
      await root.discard(tmp)
      return false
    }
  }

  /** Sorts the entries and writes the catalog to the new file `tmp`. */
  write(tmp: string): void {
    const { stride, magic } = this.format
    const { entries, count, owners } = this
    const { order, ends } = digestOrder(entries, count, stride)
    const index = owners.length * NAME
    const out = Buffer.allocUnsafe(index + FANOUT + count * stride + TRAILER)
    owners.forEach((name, n) => out.write(name, n * NAME, 'hex'))
    for (let i = 0; i < 256; i++) out.writeUInt32LE(ends[i]!, index + i * 4)
    order.forEach((e, i) => entries.copy(out, index + FANOUT + i * stride, e * stride, (e + 1) * stride))
    const end = out.length - TRAILER
    out.writeUInt32LE(owners.length, end)
    out.writeUInt32LE(count, end + 4)
    out.set(b3(out.subarray(0, end)), end + 8)
    magic.copy(out, end + 40)
    fsSync.writeFileSync(tmp, out, { flag: 'wx', mode: 0o444 })
  }
}

/** The message of the IntegrityError `read` throws (a damaged catalog), or undefined if it throws none. */
export function damage(read: () => unknown): string | undefined {
  try {
    read()
    return undefined
  } catch (e) {
    if (e instanceof IntegrityError) return e.message
    throw e
  }
}
