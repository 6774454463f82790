import type { BlobStage } from '../castore/blob-service.js'
import { toHex } from '../castore/digest.js'
import { directoryDigest } from '../castore/directory.js'
import type { TransferCounts } from '../castore/transfer.js'
import type { IngestResult } from '../store/ingest-fs.js'
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
 * Counts what this path moves into the store as `copy` counts it, so both
 * forms of `copy` report alike: a blob or Directory the store lacks is
 * copied, one it has is skipped, each counted once per run, and `bytes`
 * are the new blobs' sizes. Runs before the stage commits, while what was
 * staged is still invisible. A stage that writes through (a daemon's) has
 * made them visible already, and then the Directories are sent whole, so
 * there everything was sent: copied.
 */
export async function countNewObjects(store: Store, ingested: IngestResult, stage: BlobStage, report: CopyReport, counted: Set<string>): Promise<void> {
  const once = <T>(kind: string, items: T[], digest: (t: T) => Uint8Array): T[] =>
    items.filter((t) => {
      const key = kind + toHex(digest(t))
      if (counted.has(key)) return false
      counted.add(key)
      return true
    })
  const files = once('blob', ingested.root.kind === 'file' ? [ingested.root] : ingested.directories.flatMap((d) => d.files), (f) => f.digest)
  await forEachLimit(files, 64, async (f) => {
    if (!stage.writesThrough && (await store.blobs.has(f.digest))) {
      report.blobs.skipped++
    } else {
      report.blobs.copied++
      report.bytes += f.size
    }
  })
  // Each digest once: encoding a Directory of thousands of entries to hash it is not free.
  const dirs = ingested.directories.map((d) => ({ digest: directoryDigest(d) }))
  await forEachLimit(once('dir', dirs, (d) => d.digest), 64, async ({ digest }) => {
    if (!stage.writesThrough && (await store.directories.get(digest))) report.directories.skipped++
    else report.directories.copied++
  })
}
