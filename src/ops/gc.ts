import { UnsupportedError } from '../errors.js'
import { type GarbageCollecting, type GcOptions, type GcReport, hasGarbageCollecting, hasGcRoots } from '../store/capabilities.js'
import type { Store } from '../store/store.js'
import { type Caller, requireCapability } from './require-capability.js'

export type { GcOptions, GcReport }

/** The store as one that collects garbage, or one UnsupportedError (checked before any work starts). */
export function garbageCollector(store: Store, caller: Caller = {}): Store & GarbageCollecting {
  return requireCapability(store, hasGarbageCollecting, 'collect garbage', { what: 'gc', ...caller })
}

/**
 * gc and `delete`: orphaned castore objects go; with `prune`, the paths
 * outside the closure of every GC root (so it needs GC roots: a store
 * without them would lose every path); with `deletePaths`, those paths.
 */
export async function collectGarbage(store: Store, opts: GcOptions, caller: Caller = {}): Promise<GcReport> {
  const collector = garbageCollector(store, caller)
  if (opts.prune && !hasGcRoots(store)) {
    throw new UnsupportedError(`${caller.what ?? 'gc'} --prune needs a store with GC roots, and ${caller.storeName ?? 'this store'} has none: without them every path would go (delete paths by name instead)`)
  }
  return collector.collectGarbage(opts)
}
