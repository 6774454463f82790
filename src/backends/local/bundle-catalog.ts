/**
 * The bundles' catalog, `blobs/bundles/catalog` (catalog.ts): a store
 * gains a bundle per import of more than 16 small files, and finding a
 * small blob meant reading every bundle's index (`cat` of one file in a
 * store of 300 bundles opened 340 files, +50 ms of CPU, growing with
 * every import). Its entries are the bundles' own index entries (digest,
 * offset, size) and the bundle's number. A bundle it names that is gone
 * (gc compacted it: its live members are in a new bundle it does not
 * name) is skipped; members are checked against their digest when read,
 * as from any bundle.
 */
import { type BundleIndex, ENTRY, type Member, memberAt } from './bundle.js'
import { Catalog, CatalogBuilder, type CatalogFormat } from './catalog.js'

const FORMAT: CatalogFormat = { magic: Buffer.from('TVXCTLG1'), stride: ENTRY + 4, what: 'bundle catalog' }

export class BundleCatalog {
  private constructor(private readonly catalog: Catalog) {}

  /** The checked catalog at `file`; undefined if there is none, an IntegrityError if it is damaged. */
  static read(file: string): BundleCatalog | undefined {
    const c = Catalog.read(file, FORMAT)
    return c && new BundleCatalog(c)
  }

  /** A catalog of `bundles` and of the entries of `from` whose bundle `keep` accepts (a catalog's bundles still present), to write. */
  static build(bundles: BundleIndex[], from?: { catalog: BundleCatalog; keep: (n: number) => boolean }): CatalogBuilder {
    const out = new CatalogBuilder(FORMAT, bundles.reduce((c, b) => c + b.count, from?.catalog.catalog.count ?? 0))
    if (from) out.carry(from.catalog.catalog, from.keep)
    for (const b of bundles) for (const e of b.entries()) out.add(b.name, e)
    return out
  }

  /** Hex names of the bundles it covers, by number. */
  get names(): string[] {
    return this.catalog.owners
  }

  /** Member `digest` in the first bundle holding it that `present` accepts (by number), or undefined. */
  find(digest: Uint8Array, present: (n: number) => boolean): { bundle: number; member: Member } | undefined {
    const e = this.catalog.find(digest, present)
    return e === undefined ? undefined : { bundle: this.catalog.ownerOf(e), member: memberAt(this.catalog.entry(e), 0) }
  }
}
