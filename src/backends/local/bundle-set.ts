import fsSync from 'node:fs'
import { IntegrityError } from '../../errors.js'
import { type BundleIndex, type Member, readBundleIndex } from './bundle.js'
import { BundleCatalog } from './bundle-catalog.js'
import { damage } from './catalog.js'
import { DigestTable } from './digest-table.js'
import type { LocalRoot } from './layout.js'

/** How fresh a lookup that misses must be: `force` relists the folder (reads, gc, verify), `cheap` looks at most every REFRESH_MS (dedup: a miss only costs a copy). */
export type Freshness = 'none' | 'cheap' | 'force'
const REFRESH_MS = 100
/**
 * Up to this many bundles a lookup asks each in turn; past it, one probe
 * of a table across all of them (DigestTable), built on the first lookup
 * that needs it: a store gains a bundle per import of more than a few small
 * files, and an import of 2,000 new ones into a store of 325 bundles spent
 * 67 ms asking each (the table: ~22 ms to build in a fresh process, then
 * microseconds a lookup).
 */
const FEW_BUNDLES = 16

/** A bundle a lookup found a member in: its name (hex) and file. */
export interface BundleRef {
  name: string
  file: string
}

/** A catalog loaded, with which of the bundles it names are still there. */
interface LoadedCatalog {
  catalog: BundleCatalog
  present: boolean[]
  /** Catalog numbers by bundle name. */
  numbers: Map<string, number>
  /** Files of its bundles, joined as lookups need them. */
  files: string[]
}

/**
 * The indexes of a store's bundles: loaded once per process, on first
 * use; bundles this process publishes are added as they appear, those of
 * other processes found when a lookup misses and the folder changed (never
 * a scan of the store per call). A sweep resets it. The catalog
 * (bundle-catalog.ts) stands in for the indexes of the bundles it names:
 * only the others are read one by one, and once more than FEW_BUNDLES are,
 * a writer's commit replaces the catalog with one that names them all.
 */
export class BundleSet {
  /** Indexes of the bundles the catalog does not name. */
  private readonly byName = new Map<string, BundleIndex>()
  /** Which bundle holds a digest, across all of them (search, past FEW_BUNDLES); numbers index `numbered`. */
  private readonly table = new DigestTable()
  private numbered: BundleIndex[] = []
  /** The table lacks bundles or holds dropped ones: it is built afresh at the next search that needs it. */
  private stale = true
  private loaded = false
  private checkedAt = 0
  private stamp = ''
  private catalog: LoadedCatalog | undefined
  private catalogStamp = ''

  constructor(private readonly root: LocalRoot) {}

  reset(): void {
    this.byName.clear()
    this.dropTable()
    this.catalog = undefined
    this.catalogStamp = ''
    this.loaded = false
  }

  get isLoaded(): boolean {
    return this.loaded
  }

  /** Forgets a bundle found gone (compacted by gc), so that the next lookup lists the folder again. */
  forget(name: string): void {
    this.unload(name)
    const c = this.catalog
    const n = c?.numbers.get(name)
    if (c && n !== undefined) c.present[n] = false
  }

  /** Records a bundle this process just published. */
  add(index: BundleIndex): void {
    if (this.loaded) this.keep(index)
  }

  /** The bundle holding `digest` and where in it; `fresh`: how hard a miss looks for bundles published since. */
  find(digest: Uint8Array, fresh: Freshness): { bundle: BundleRef; member: Member } | undefined {
    if (!this.loaded) this.relist()
    const hit = this.search(digest)
    if (hit || fresh === 'none') return hit
    if (fresh === 'cheap') {
      const now = Date.now()
      if (now - this.checkedAt < REFRESH_MS) return undefined
      this.checkedAt = now
      if (this.folderStamp() === this.stamp) return undefined
    }
    this.relist()
    return this.search(digest)
  }

  /** Like find without looking for new bundles, and only once loaded: undefined, without a listing, before. */
  ifLoaded(digest: Uint8Array): { bundle: BundleRef; member: Member } | undefined {
    return this.loaded ? this.search(digest) : undefined
  }

  /**
   * Once more than FEW_BUNDLES bundles are outside the catalog, writes one
   * that names them and the present bundles of the last (after a writer's
   * commit that published a bundle). One a sweep removes meanwhile is
   * named but skipped, as any gone bundle is. A failure leaves the old
   * catalog: it is only ever a shortcut. Its cost grows with the store
   * (1M members: ~0.75 s to write, 44 MiB), paid once per 17 bundles.
   */
  async consolidate(): Promise<void> {
    if (this.loaded && this.byName.size > FEW_BUNDLES) await this.writeCatalog()
  }

  /**
   * After a sweep (writers held off): a catalog naming bundles it deleted
   * or compacted is written again without them, and with their
   * replacements. `anyway` (verify's repair): written again from what is
   * there whatever the last one was (damaged, say).
   */
  async rewriteCatalog(anyway = false): Promise<void> {
    this.reset()
    this.relist()
    if (anyway ? this.byName.size > 0 : this.catalog?.present.includes(false)) await this.writeCatalog()
  }

  /** Why the catalog is damaged, or undefined if it is sound or absent (verify). */
  catalogDamage(): string | undefined {
    return damage(() => BundleCatalog.read(this.root.bundleCatalogPath))
  }

  private async writeCatalog(): Promise<void> {
    const c = this.catalog
    const built = BundleCatalog.build([...this.byName.values()], c && { catalog: c.catalog, keep: (n) => c.present[n]! })
    // The new catalog stands in for the indexes it names from the next lookup on.
    if (await built.publish(this.root, this.root.bundleCatalogPath)) this.loaded = false
  }

  private search(digest: Uint8Array): { bundle: BundleRef; member: Member } | undefined {
    const c = this.catalog
    if (c) {
      const hit = c.catalog.find(digest, (n) => c.present[n]!)
      if (hit) return { bundle: { name: c.catalog.names[hit.bundle]!, file: (c.files[hit.bundle] ??= this.root.bundlePath(c.catalog.names[hit.bundle]!)) }, member: hit.member }
    }
    if (this.byName.size <= FEW_BUNDLES) {
      for (const bundle of this.byName.values()) {
        const member = bundle.find(digest)
        if (member) return { bundle, member }
      }
      return undefined
    }
    if (this.stale) this.rebuildTable()
    return this.table.find(digest, (n) => {
      const bundle = this.numbered[n]!
      const member = bundle.find(digest)
      return member && { bundle, member }
    })
  }

  /** Drops a bundle's own index (gone, or named by the catalog now). */
  private unload(name: string): void {
    if (this.byName.delete(name)) this.dropTable()
  }

  private keep(index: BundleIndex): void {
    if (this.byName.has(index.name)) return
    this.byName.set(index.name, index)
    if (this.stale) return
    const n = this.numbered.push(index) - 1
    index.addTo(this.table, n)
  }

  private dropTable(): void {
    this.table.clear()
    this.numbered = []
    this.stale = true
  }

  private rebuildTable(): void {
    this.dropTable()
    this.stale = false
    let members = 0
    for (const index of this.byName.values()) members += index.count
    this.table.reserve(members)
    for (const index of this.byName.values()) {
      const n = this.numbered.push(index) - 1
      index.addTo(this.table, n)
    }
  }

  private folderStamp(): string {
    return fileStamp(this.root.bundlesDir)
  }

  /** The catalog as it is now (read again only if its file changed), which of its bundles are in `names`; undefined if there is none or it is damaged. */
  private readCatalog(names: Set<string>): LoadedCatalog | undefined {
    const stamp = fileStamp(this.root.bundleCatalogPath)
    if (stamp !== this.catalogStamp) {
      this.catalogStamp = stamp
      let catalog: BundleCatalog | undefined
      try {
        catalog = stamp ? BundleCatalog.read(this.root.bundleCatalogPath) : undefined
      } catch (e) {
        // Damaged (a torn write, a flipped bit): the bundles are read one by one, and the next consolidation replaces it.
        if (!(e instanceof IntegrityError)) throw e
      }
      this.catalog = catalog && { catalog, present: [], numbers: new Map(catalog.names.map((n, i) => [n, i])), files: [] }
    }
    const c = this.catalog
    if (c) c.present = c.catalog.names.map((n) => names.has(n))
    return c
  }

  /** Loads the catalog and the bundles it does not name, and forgets those that are gone (a sweep in another process compacted them). */
  private relist(): void {
    this.stamp = this.folderStamp()
    this.checkedAt = Date.now()
    const names = new Set(this.root.bundleNames())
    const c = this.readCatalog(names)
    for (const n of this.byName.keys()) if (!names.has(n) || c?.numbers.has(n)) this.unload(n)
    for (const n of names) {
      if (this.byName.has(n) || c?.numbers.has(n)) continue
      try {
        const index = readBundleIndex(this.root.bundlePath(n), n)
        if (index) this.keep(index)
      } catch (e) {
        if (!(e instanceof IntegrityError)) throw e
      }
    }
    this.loaded = true
  }
}

/** A file's identity and version (inode, mtime, size); '' if it is absent. */
function fileStamp(file: string): string {
  const st = fsSync.statSync(file, { throwIfNoEntry: false, bigint: true })
  return st ? `${st.ino}:${st.mtimeNs}:${st.size}` : ''
}
