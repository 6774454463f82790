import fsSync from 'node:fs'
import { toHex } from '../../castore/digest.js'
import type { Directory } from '../../castore/directory.js'
import { decodeDirectory } from '../../castore/proto.js'
import { type LocalRoot, readSmallFile } from './layout.js'
import { BundleSet, type Freshness, type Member } from './bundle.js'
import { ChunkIndex, type ChunkRef, readManifest } from './pack.js'

/** Where a blob's bytes are: a plain file, a pack of its own, one chunk inside some blob's pack (readable by its digest too), or a member of a bundle. */
export type BlobLocation =
  | { kind: 'plain'; file: string; size: number }
  | { kind: 'pack'; file: string }
  | { kind: 'chunk'; file: string; ref: ChunkRef }
  | { kind: 'member'; file: string; bundle: string; member: Member }

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

  constructor(private readonly root: LocalRoot) {
    this.chunks = new ChunkIndex(root)
    this.bundles = new BundleSet(root)
    // A sweep may have deleted packs the index lists, and deleted or compacted bundles.
    root.onSweep(() => {
      this.chunks.reset()
      this.bundles.reset()
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

  /**
   * Where blob `hex` is stored, in the order reads look: plain file, its own pack, a chunk of another pack.
   * `small`: the blob is at most SMALL_BLOB bytes, so never a pack of its own (one failing syscall fewer per new blob).
   * `fresh`: how hard a miss looks for bundles published since they were listed (BundleSet.find).
   * `digest`: the bytes of `hex`, where the caller has them.
   */
  locate(hex: string, small = false, fresh: Freshness = 'force', digest?: Uint8Array): BlobLocation | undefined {
    const plain = this.root.objectPath('blobs', hex)
    const st = fsSync.statSync(plain, { throwIfNoEntry: false })
    if (st) return { kind: 'plain', file: plain, size: st.size }
    const pack = this.root.packPath(hex)
    if (!small && fsSync.existsSync(pack)) return { kind: 'pack', file: pack }
    const ref = this.chunks.byHex(hex)
    if (ref) return { kind: 'chunk', file: this.root.packPath(ref.pack), ref }
    const m = this.bundles.find(digest ?? Buffer.from(hex, 'hex'), fresh)
    return m && { kind: 'member', file: m.bundle.file, bundle: m.bundle.name, member: m.member }
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
