import { narListing } from '../store/nar/listing.js'
import { type NarSinkCapable, isNarSource } from '../store/capabilities.js'
import { renderNar } from '../store/nar/render.js'
import { storePathOf } from '../store/path-info.js'
import type { Store } from '../store/store.js'
import { type CacheCopyOptions, requireTrusted } from './copy-from-cache.js'
import { type PathCopyOptions, copyPaths } from './copy-paths.js'
import type { CopyReport } from './copy-report.js'

/** From a binary cache, its paths are admitted as by copy --from. */
export type CacheToCacheOptions = PathCopyOptions & Pick<CacheCopyOptions, 'trustedKeys' | 'checkSigs'>

/**
 * Copies store paths and their closures into a Nix binary cache: each path
 * whose narinfo the cache lacks is rendered from the source's castore as a
 * NAR and written (NAR file, then narinfo), references first. A cache
 * holds NAR files, not castore objects, so the report's blob and Directory
 * counts stay 0 and `bytes` counts the NAR file bytes written.
 */
export function copyToCache(from: Store, to: Store & NarSinkCapable, args: string[], opts: CacheToCacheOptions = {}): Promise<CopyReport> {
  let compressed = 0
  return copyPaths(from, args, opts, (report, progress) => ({
    storeDir: to.storeDir,
    has: (info) => to.narSink.has(storePathOf(info).digest, { signal: opts.signal }),
    put: async (info) => {
      const onBytes = (n: number) => {
        compressed += n
        progress()
      }
      report.bytes += (await to.narSink.putPath(info, () => renderNar(info.node, from, { signal: opts.signal }), { signal: opts.signal, onBytes, listing: () => narListing(info.node, from, opts.signal) })).written
    },
    // Progress counts the NAR files as they are compressed, before they are known to be new.
    progressBytes: () => compressed,
    // From another binary cache, the paths must be trusted as `copy --from` trusts them: they may be signed here next.
    admit: async (missing) => {
      if (!isNarSource(from) || opts.checkSigs === false) return
      for (const info of missing) {
        const fields = await from.narInfo(storePathOf(info).digest, { signal: opts.signal })
        if (fields) requireTrusted(fields, from, opts.trustedKeys ?? [])
      }
    },
  }))
}
