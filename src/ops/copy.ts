import { bytesEqual } from '../castore/digest.js'
import { CastoreTransfer } from '../castore/transfer.js'
import { storePathOf } from '../store/path-info.js'
import type { Store } from '../store/store.js'
import { hasNarSink, inWriteSession, isNarSource } from '../store/capabilities.js'
import { type CacheCopyOptions, copyFromCache } from './copy-from-cache.js'
import { copyPaths } from './copy-paths.js'
import { copyToCache } from './copy-to-cache.js'
import { publishPathInfo } from './publish.js'

import { type CopyReport, newCopyReport } from './copy-report.js'

export { type CopyReport, newCopyReport }

/** With a binary cache as the source, the copy is copyFromCache's (its trust options apply there). */
export interface CopyOptions extends Pick<CacheCopyOptions, 'trustedKeys' | 'checkSigs' | 'signal'> {
  /** Store paths transferred at once. */
  parallel?: number
  onProgress?: (p: { pathsDone: number; pathsTotal: number; bytes: number }) => void
}

/**
 * Copies store paths and their closures from one store to another. The
 * target is asked which paths it has (pipelined lookups), and for each
 * missing path which blobs and Directories it has, so only what is
 * missing moves. Paths go references first, and within a path blobs, then
 * Directories, then the PathInfo: the target never holds a PathInfo whose
 * data or references are missing.
 */
export function copyClosure(from: Store, to: Store, args: string[], opts: CopyOptions = {}): Promise<CopyReport> {
  // A Nix binary cache takes whole NARs, not castore objects (from any source, a cache too).
  if (hasNarSink(to)) return copyToCache(from, to, args, opts)
  if (isNarSource(from)) return copyFromCache(from, to, args, opts)
  // One write session on the target: paths found there stay until the paths that refer to them are registered.
  return inWriteSession(to, (to) => copyInSession(from, to, args, opts))
}

async function copyInSession(from: Store, to: Store, args: string[], opts: CopyOptions): Promise<CopyReport> {
  return copyPaths(from, args, opts, (report) => {
    const transfer = new CastoreTransfer(from, to, report)
    return {
      storeDir: to.storeDir,
      has: async (info) => {
        const there = await to.pathInfos.get(storePathOf(info).digest)
        return there !== undefined && bytesEqual(there.node.name, info.node.name)
      },
      put: async (info) => {
        await transfer.tree(info.node)
        await to.pathInfos.put(info)
      },
    }
  })
}
