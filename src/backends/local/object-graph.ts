import fsSync from 'node:fs'
import path from 'node:path'
import { toHex } from '../../castore/digest.js'
import type { Directory } from '../../castore/directory.js'
import { decodeDirectory } from '../../castore/proto.js'
import { type LocalRoot, readSmallFile } from './layout.js'
import type { Member } from './bundle.js'
import { BundleSet, type Freshness } from './bundle-set.js'
import { ChunkIndex } from './chunk-index.js'
import { type ChunkRef, readManifest } from './pack.js'

/** Where a blob's bytes are: a plain file, a pack of its own, one chunk inside some blob's pack (readable by its digest too), or a member of a bundle. */
export type BlobLocation =
  | { kind: 'plain'; file: string; size: number }
  | { kind: 'pack'; file: string }
  | { kind: 'chunk'; file: string; ref: ChunkRef }
  | { kind: 'member'; file: string; bundle: string; member: Member }

/** Names of a blob shard kept at most (a store from before bundles may hold millions of plain blobs): ~300 KiB of strings each. */
const MAX_LISTED = 4096

/** What a session relies on when it relies on a bundle member: the member, wherever it is by then (gc may have compacted its bundle). */
const MEMBER_MARK = '#member:'

/**
 * How a local store's objects refer to each other, read from disk without
 * re-hashing: where a blob lives (plain, pack or chunk), which
 * Directories and blobs a tree uses, which packs a pack borrows from.
 * One per store, shared by blob reads, gc and verify, so the chunk index
 * (a scan of every pack's manifest) is built once, not once by each.
 */
export class ObjectGraph {
  readonly chunks: ChunkIndex
  /** The bundles' indexes (small blobs of one stage commit each). */
  readonly bundles: BundleSet
  /** Listings of blob shards by their 2 hex digits (locateSmall); null for one over MAX_LISTED names. */
  private readonly shards = new Map<string, Set<string> | null>()

  constructor(private readonly root: LocalRoot) {
    this.chunks = new ChunkIndex(root)
    this.bundles = new BundleSet(root)
    // A sweep may have deleted packs the index lists, and deleted or compacted bundles.
    root.onSweep(() => {
      this.chunks.reset()
      this.bundles.reset()
      this.shards.clear()
    })
    // A member found stored is relied on as itself, not as its bundle's file: a compacted bundle keeps its live members in a new file.
    root.locks.stillThere = (relied) => {
      const at = relied.indexOf(MEMBER_MARK)
      return at < 0 ? fsSync.existsSync(relied) : this.locate(relied.slice(at + MEMBER_MARK.length), true, 'force') !== undefined
    }
  }

  /** What a write session records when it relies on blob `hex` at `at` (StoreLocks.rely). */
  static reliance(hex: string, at: BlobLocation): string {
    return at.kind === 'member' ? `${at.file}${MEMBER_MARK}${hex}` : at.file
  }

  /**
   * Forgets the chunk index, so the next lookup sees every pack published
   * so far: the index only learns this process's own packs as they come,
   * and gc and verify must not take a chunk in another process's pack for
   * a missing blob (gc would delete the pack, repair the path).
   */
  refresh(): void {
    this.chunks.reset()
    this.bundles.reset()
  }

  /** After a sweep that deleted or compacted bundles or packs: the catalogs are written again without them (unless none names them); `anyway`: from what is there, whatever they were. */
  async rewriteCatalogs(anyway = false): Promise<void> {
    await this.bundles.rewriteCatalog(anyway)
    await this.chunks.rewriteCatalog(anyway)
  }

  /** What is wrong with each damaged catalog, one line each (verify). */
  catalogDamage(): string[] {
    return [this.bundles.catalogDamage(), this.chunks.catalogDamage()].filter((m): m is string => m !== undefined)
  }

  /**
   * Where blob `hex` is stored, in the order reads look: plain file, its own pack, a bundle member, a chunk of another pack.
   * The chunk index comes last: loading it reads every pack's manifest, so a lookup the bundles answer must not pay for it.
   * `small`: the blob is at most SMALL_BLOB bytes, so never a pack of its own (one failing syscall fewer per new blob).
   * `fresh`: how hard a miss looks for bundles published since they were listed (BundleSet.find).
   * `digest`: the bytes of `hex`, where the caller has them.
   * `plainToo`: false when the caller has looked for a plain file already.
   * `chunks`: 'loaded' asks the chunk index only if something loaded it already (a dedup lookup, where a miss costs a copy).
   */
  locate(hex: string, small = false, fresh: Freshness = 'force', digest?: Uint8Array, plainToo = true, chunks: 'load' | 'loaded' = 'load'): BlobLocation | undefined {
    if (plainToo) {
      const plain = this.root.objectPath('blobs', hex)
      const st = fsSync.statSync(plain, { throwIfNoEntry: false })
      if (st) return { kind: 'plain', file: plain, size: st.size }
    }
    const pack = this.root.packPath(hex)
    if (!small && fsSync.existsSync(pack)) return { kind: 'pack', file: pack }
    const bytes = digest ?? Buffer.from(hex, 'hex')
    const m = this.bundles.find(bytes, fresh)
    if (m) return { kind: 'member', file: m.bundle.file, bundle: m.bundle.name, member: m.member }
    const ref = chunks === 'load' ? this.chunks.byHex(hex, bytes) : this.chunks.ifLoaded(hex, bytes)
    return ref && { kind: 'chunk', file: this.root.packPath(ref.pack), ref }
  }

  /**
   * Where a small blob about to be written is stored already, if it is:
   * for dedup only (a miss costs a copy, never a wrong answer). Asked in
   * memory first, so that neither a new blob nor one found in a bundle
   * costs a failing stat (an import of many new files made one each, a
   * re-import one per bundled file): the bundle indexes once loaded, then
   * a listing of the blob's shard, made once per shard and kept until
   * forgetListings() (a stage's start) or a sweep. A plain file it lists
   * is still stat'ed; one another process publishes after the listing is
   * missed, and written again. The chunk index is asked only if loaded: a
   * small file that equals a chunk of some large blob is rare, and loading
   * the index for it would cost every import a read of every pack's
   * manifest (an import of 3 small files into a store of 300 packs: 605
   * reads, 0.24 s more CPU).
   */
  locateSmall(hex: string, digest: Uint8Array): BlobLocation | undefined {
    const m = this.bundles.ifLoaded(digest)
    if (m) return { kind: 'member', file: m.bundle.file, bundle: m.bundle.name, member: m.member }
    const listed = this.shardListing(hex)
    if (!listed || listed.has(hex)) {
      const plain = this.root.objectPath('blobs', hex)
      const st = fsSync.statSync(plain, { throwIfNoEntry: false })
      if (st) return { kind: 'plain', file: plain, size: st.size }
    }
    return this.locate(hex, true, 'cheap', digest, false, 'loaded')
  }

  /** Listings of blob shards (locateSmall) made since a stage started: a stale one only misses blobs published since. */
  forgetListings(): void {
    this.shards.clear()
  }

  /** The names in blob `hex`'s shard, listed once; undefined for a shard too large to keep (then each lookup stats). */
  private shardListing(hex: string): Set<string> | undefined {
    const shard = hex.slice(0, 2)
    let names = this.shards.get(shard)
    if (names === undefined) {
      let list: string[]
      try {
        list = fsSync.readdirSync(path.dirname(this.root.objectPath('blobs', hex)))
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e
        list = []
      }
      names = list.length <= MAX_LISTED ? new Set(list) : null
      this.shards.set(shard, names)
    }
    return names ?? undefined
  }

  /** A stored Directory, decoded without re-hashing; undefined if absent or undecodable (verify reports those). */
  directory(hex: string): Directory | undefined {
    return readStoredDirectory(this.root.objectPath('dirs', hex))
  }

  /**
   * Walks the trees below the Directories `start` (hex), with an explicit
   * stack (trees may be 10,000 deep), each Directory once for all walks
   * sharing `seen`: `blob` gets each file's digest, `missing` each absent
   * Directory. An undecodable one has no children here (verify reports it).
   */
  walk(start: Iterable<string>, seen: Set<string>, visit: { blob: (hex: string) => void; missing?: (hex: string) => void }): void {
    const stack = [...start]
    while (stack.length > 0) {
      const hex = stack.pop()!
      if (seen.has(hex)) continue
      seen.add(hex)
      const bytes = readSmallFile(this.root.objectPath('dirs', hex))
      if (!bytes) {
        visit.missing?.(hex)
        continue
      }
      let dir: Directory
      try {
        dir = decodeDirectory(bytes)
      } catch {
        continue
      }
      for (const c of dir.directories) stack.push(toHex(c.digest))
      for (const f of dir.files) visit.blob(toHex(f.digest))
    }
  }
}

/** A stored Directory, decoded without re-hashing; undefined if absent or undecodable (verify reports those). */
export function readStoredDirectory(file: string): Directory | undefined {
  const bytes = readSmallFile(file)
  if (!bytes) return undefined
  try {
    return decodeDirectory(bytes)
  } catch {
    return undefined
  }
}

/** Hex digests of the other packs a pack borrows chunks from; none if it is absent or its manifest is corrupt. */
export function borrowedPacks(file: string, self: string): string[] {
  let manifest
  try {
    manifest = readManifest(file, self) ?? []
  } catch {
    return []
  }
  return [...new Set(manifest.filter((c) => c.pack !== self).map((c) => c.pack))]
}
