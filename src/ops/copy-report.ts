import type { BlobStage } from '../castore/blob-service.js'
import { type B3Digest, binaryKey, fromBinaryKey } from '../castore/digest.js'
import type { TransferCounts } from '../castore/transfer.js'
import type { TreeObserver } from '../castore/tree-stage.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/pool.js'

/** What `copy --json` prints, with or without --closure, from any source. */
export interface CopyReport extends TransferCounts {
  /** Every path of the closure, sorted. */
  paths: string[]
  copied: string[]
  skipped: string[]
}

/** An empty report for a copy of `paths` (`copy`, `copy --closure` and a copy from a binary cache report the same shape). */
export function newCopyReport(paths: string[]): CopyReport {
  return { paths: [...paths].sort(), copied: [], skipped: [], blobs: { copied: 0, skipped: 0 }, directories: { copied: 0, skipped: 0 }, bytes: 0 }
}

/**
 * What an ingest staged, gathered as it goes (TreeObserver) for
 * countNewObjects: each blob's size and each Directory, once, under its
 * binaryKey(), not the tree.
 */
export class StagedObjects implements TreeObserver {
  readonly blobs = new Map<string, number>()
  readonly directories = new Set<string>()

  file(digest: B3Digest, size: number): void {
    this.blobs.set(binaryKey(digest), size)
  }

  directory(digest: B3Digest): void {
    this.directories.add(binaryKey(digest))
  }
}

/**
 * Counts what this path moves into the store as `copy` counts it, so both
 * forms of `copy` report alike: a blob or Directory the store lacks is
 * copied, one it has is skipped, each counted once per run, and `bytes`
 * are the new blobs' sizes. Runs before the stage commits, while what was
 * staged is still invisible. A stage that writes through (a daemon's) has
 * made them visible already, and then the Directories are sent whole, so
 * there everything was sent: copied.
 */
export async function countNewObjects(store: Store, staged: StagedObjects, stage: BlobStage, report: CopyReport, counted: Set<string>): Promise<void> {
  // Each once per run: the keys not counted yet, now counted.
  const once = (kind: string, keys: Iterable<string>): string[] => [...keys].filter((k) => !counted.has(kind + k) && counted.add(kind + k))
  await forEachLimit(once('blob', staged.blobs.keys()), 64, async (key) => {
    if (!stage.writesThrough && (await store.blobs.has(fromBinaryKey(key)))) {
      report.blobs.skipped++
    } else {
      report.blobs.copied++
      report.bytes += staged.blobs.get(key)!
    }
  })
  await forEachLimit(once('dir', staged.directories), 64, async (key) => {
    if (!stage.writesThrough && (await store.directories.get(fromBinaryKey(key)))) report.directories.skipped++
    else report.directories.copied++
  })
}
