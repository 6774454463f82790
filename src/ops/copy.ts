import { bytesEqual } from '../castore/digest.js'
import { CastoreTransfer } from '../castore/transfer.js'
import * as nixbase32 from '../store/nixbase32.js'
import { storePathOf } from '../store/path-info.js'
import { absolute } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { runDag } from '../util/dag.js'
import { forEachLimit } from '../util/pool.js'
import { closureOf } from './closure.js'
import { inWriteSession, isNarSource } from '../store/capabilities.js'
import { type CacheCopyOptions, copyFromCache } from './copy-from-cache.js'
import { publishPathInfo } from './publish.js'

import { type CopyReport, newCopyReport } from './copy-report.js'

export { type CopyReport, newCopyReport }

/** With a binary cache as the source, the copy is copyFromCache's (its trust options apply there). */
export interface CopyOptions extends Pick<CacheCopyOptions, 'trustedKeys' | 'checkSigs' | 'signal'> {
  /** Store paths transferred at once. */
  parallel?: number
  onProgress?: (p: { pathsDone: number; pathsTotal: number; bytes: number }) => void
}

/** Lookups in flight when asking a store which paths it has: pipelined, not one round trip each. */
const LOOKUPS_IN_FLIGHT = 64

/**
 * Copies store paths and their closures from one store to another. The
 * target is asked which paths it has (pipelined lookups), and for each
 * missing path which blobs and Directories it has, so only what is
 * missing moves. Paths go references first, and within a path blobs, then
 * Directories, then the PathInfo: the target never holds a PathInfo whose
 * data or references are missing.
 */
export function copyClosure(from: Store, to: Store, args: string[], opts: CopyOptions = {}): Promise<CopyReport> {
  if (isNarSource(from)) return copyFromCache(from, to, args, opts)
  // One write session on the target: paths found there stay until the paths that refer to them are registered.
  return inWriteSession(to, () => copyInSession(from, to, args, opts))
}

async function copyInSession(from: Store, to: Store, args: string[], opts: CopyOptions): Promise<CopyReport> {
  const closure = await closureOf(from, args)
  const report = newCopyReport([...closure.values()].map((i) => absolute(storePathOf(i), from.storeDir)))
  const present = new Set<string>()
  await forEachLimit(closure.entries(), LOOKUPS_IN_FLIGHT, async ([hash, info]) => {
    const there = await to.pathInfos.get(storePathOf(info).digest)
    if (there && bytesEqual(there.node.name, info.node.name)) present.add(hash)
  })

  const transfer = new CastoreTransfer(from, to, report)
  let pathsDone = present.size
  const progress = () => opts.onProgress?.({ pathsDone, pathsTotal: closure.size, bytes: report.bytes })
  progress()
  const missing = [...closure.keys()].filter((h) => !present.has(h))
  // References first (a path found in the target needs nothing), `parallel` paths at once.
  const references = (hash: string) => closure.get(hash)!.references.map((r) => nixbase32.encode(r))
  await runDag(missing, references, Math.max(1, opts.parallel ?? 4), async (hash) => {
    const info = closure.get(hash)!
    await transfer.tree(info.node)
    await to.pathInfos.put(info)
    report.copied.push(absolute(storePathOf(info), to.storeDir))
    pathsDone++
    progress()
  })
  for (const h of present) report.skipped.push(absolute(storePathOf(closure.get(h)!), to.storeDir))
  report.copied.sort()
  report.skipped.sort()
  return report
}
