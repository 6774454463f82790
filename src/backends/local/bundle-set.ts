import fsSync from 'node:fs'
import { IntegrityError } from '../../errors.js'
import { type BundleIndex, type Member, readBundleIndex } from './bundle.js'
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

/**
 * The indexes of a store's bundles: loaded once per process, on first
 * use; bundles this process publishes are added as they appear, those of
 * other processes found when a lookup misses and the folder changed (never
 * a scan of the store per call). A sweep resets it.
 */
export class BundleSet {
  private readonly byName = new Map<string, BundleIndex>()
  /** Which bundle holds a digest, across all of them (search, past FEW_BUNDLES); numbers index `numbered`. */
  private readonly table = new DigestTable()
  private numbered: BundleIndex[] = []
  /** The table lacks bundles or holds dropped ones: it is built afresh at the next search that needs it. */
  private stale = true
  private loaded = false
  private checkedAt = 0
  private stamp = ''

  constructor(private readonly root: LocalRoot) {}

  reset(): void {
    this.byName.clear()
    this.dropTable()
    this.loaded = false
  }

  get isLoaded(): boolean {
    return this.loaded
  }

  /** Every bundle's index (corrupt ones left out: verify reports them). */
  all(): BundleIndex[] {
    this.relist()
    return [...this.byName.values()]
  }

  /** Forgets a bundle found gone (compacted by gc), so that the next lookup lists the folder again. */
  forget(name: string): void {
    if (this.byName.delete(name)) this.dropTable()
  }

  /** Records a bundle this process just published. */
  add(index: BundleIndex): void {
    if (this.loaded) this.keep(index)
  }

  /** The bundle holding `digest` and where in it; `fresh`: how hard a miss looks for bundles published since. */
  find(digest: Uint8Array, fresh: Freshness): { bundle: BundleIndex; member: Member } | undefined {
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
  ifLoaded(digest: Uint8Array): { bundle: BundleIndex; member: Member } | undefined {
    return this.loaded ? this.search(digest) : undefined
  }

  private search(digest: Uint8Array): { bundle: BundleIndex; member: Member } | undefined {
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
    const st = fsSync.statSync(this.root.bundlesDir, { throwIfNoEntry: false, bigint: true })
    return st ? `${st.ino}:${st.mtimeNs}:${st.size}` : ''
  }

  /** Loads the bundles not loaded yet and forgets those that are gone (a sweep in another process compacted them). */
  private relist(): void {
    this.stamp = this.folderStamp()
    this.checkedAt = Date.now()
    const names = new Set(this.root.bundleNames())
    for (const n of this.byName.keys()) if (!names.has(n)) this.forget(n)
    for (const n of names) {
      if (this.byName.has(n)) continue
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
