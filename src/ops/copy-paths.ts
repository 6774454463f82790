import * as nixbase32 from '../store/nixbase32.js'
import { type PathInfo, storePathOf } from '../store/path-info.js'
import { absolute } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { runDag } from '../util/dag.js'
import { forEachLimit } from '../util/pool.js'
import type { CallOptions } from '../util/call-options.js'
import { closureOf } from './closure.js'
import { type CopyReport, newCopyReport } from './copy-report.js'

/** What the shared schedule takes of copy's options. */
export interface PathCopyOptions extends CallOptions {
  /** Store paths transferred at once. */
  parallel?: number
  onProgress?: (p: { pathsDone: number; pathsTotal: number; bytes: number }) => void
}

/** How a copy's target takes paths: a store (castore objects, then the PathInfo) or a binary cache (NARs). */
export interface PathTarget {
  storeDir: string
  /** Whether the target has the path already (it is skipped). */
  has(info: PathInfo): Promise<boolean>
  /** Copies one path, whose references the target has; counts what moved in the report. */
  put(info: PathInfo): Promise<void>
  /** The bytes progress shows, where they are not the report's (what is under way counts too). */
  progressBytes?(): number
  /** Refuses (throws) before anything moves if one of the paths the target lacks may not go there. */
  admit?(missing: PathInfo[]): Promise<void>
}

/** Lookups in flight when asking a target which paths it has: pipelined, not one round trip each. */
const LOOKUPS_IN_FLIGHT = 64

/**
 * The schedule every copy shares: the closure of `args` in `from`, the
 * target asked which paths it has (pipelined lookups), then the missing
 * paths references first (a path found in the target needs nothing),
 * `parallel` at once, with progress after each.
 */
export async function copyPaths(from: Store, args: string[], opts: PathCopyOptions, targetFor: (report: CopyReport, progress: () => void) => PathTarget): Promise<CopyReport> {
  const closure = await closureOf(from, args)
  const report = newCopyReport([...closure.values()].map((i) => absolute(storePathOf(i), from.storeDir)))
  let pathsDone = 0
  const progress = () => opts.onProgress?.({ pathsDone, pathsTotal: closure.size, bytes: target.progressBytes?.() ?? report.bytes })
  const target = targetFor(report, progress)
  const present = new Set<string>()
  await forEachLimit(closure.entries(), LOOKUPS_IN_FLIGHT, async ([hash, info]) => {
    if (await target.has(info)) present.add(hash)
  })

  pathsDone = present.size
  progress()
  const missing = [...closure.keys()].filter((h) => !present.has(h))
  await target.admit?.(missing.map((h) => closure.get(h)!))
  const references = (hash: string) => closure.get(hash)!.references.map((r) => nixbase32.encode(r))
  await runDag(missing, references, Math.max(1, opts.parallel ?? 4), async (hash) => {
    const info = closure.get(hash)!
    await target.put(info)
    report.copied.push(absolute(storePathOf(info), target.storeDir))
    pathsDone++
    progress()
  })
  for (const h of present) report.skipped.push(absolute(storePathOf(closure.get(h)!), target.storeDir))
  report.copied.sort()
  report.skipped.sort()
  return report
}
