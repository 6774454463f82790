import { NotFoundError, UsageError } from '../errors.js'
import * as nixbase32 from '../store/nixbase32.js'
import type { PathInfo } from '../store/path-info.js'
import type { PathInfoService } from '../store/path-info-service.js'
import { HASH_PART_LEN, type StorePath, absolute, basename, hashPart, parseStorePathArg } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/pool.js'
import { closureOf, referencesFirst as referencesFirstBy } from './closure.js'

/** PathInfo lookups in flight at once: a remote store answers each in a round trip. */
const LOOKUPS_IN_FLIGHT = 64

export interface PathInfoQuery {
  /** Every path in the store instead of `args`. */
  all?: boolean
  /** The closures of the paths, by references. */
  recursive?: boolean
  /** Also the sum of NarSizes over each path's closure. */
  closureSize?: boolean
  /** An invalid path is an entry without `info` (as `nix path-info --json` lists it) instead of an error. */
  allowInvalid?: boolean
}

export interface PathInfoEntry {
  /** Absolute store path. */
  path: string
  /** Absent: the path is not valid (only with allowInvalid). */
  info?: PathInfo
  closureSize?: number
}

/**
 * What `nix path-info` reports: the paths `args` name (a path inside a store
 * path names its store path, as with Nix), or all of them, optionally with
 * their closures and closure sizes. Sorted by basename, as Nix's sets are.
 */
export async function queryPathInfos(store: Store, args: string[], q: PathInfoQuery): Promise<PathInfoEntry[]> {
  if (q.all && args.length > 0) throw new UsageError("'--all' does not expect arguments")
  if (!q.all && args.length === 0) throw new UsageError('give the store paths to describe, or --all')
  const known = new Map<string, PathInfo>()
  const entries = new Map<string, PathInfoEntry>()
  if (q.all) {
    for await (const info of store.pathInfos.list()) {
      const path = `${store.storeDir}/${Buffer.from(info.node.name).toString('utf8')}`
      known.set(hashOf(path), info)
      entries.set(path, { path, info })
    }
  } else {
    const asked = new Map<string, StorePath>(args.map((a) => parseStorePathArg(a, store.storeDir).path).map((p) => [absolute(p, store.storeDir), p]))
    await forEachLimit(asked, LOOKUPS_IN_FLIGHT, async ([path, p]) => {
      const found = await store.pathInfos.get(p.digest)
      // The PathInfo is keyed by the hash part; the name must match too.
      const info = found && Buffer.from(found.node.name).toString('utf8') === basename(p) ? found : undefined
      if (info) known.set(hashPart(p), info)
      entries.set(path, { path, info })
    })
    // The first in Nix's order is the one reported.
    const invalid = [...entries.keys()].sort().find((path) => !entries.get(path)!.info)
    if (invalid && (!q.allowInvalid || q.recursive)) throw new NotFoundError(`path '${invalid}' is not valid`)
  }
  // Every lookup below (closures overlap) is answered once.
  const memo = memoised(store, known)
  if (q.recursive && !q.all) {
    for (const info of (await closureOf(memo, [...entries.keys()])).values()) {
      const path = `${store.storeDir}/${Buffer.from(info.node.name).toString('utf8')}`
      entries.set(path, { path, info })
    }
  }
  if (q.closureSize) {
    for (const e of entries.values()) {
      if (!e.info) continue
      let size = 0
      for (const info of (await closureOf(memo, [e.path])).values()) size += info.narinfo?.narSize ?? 0
      e.closureSize = size
    }
  }
  return [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}

/**
 * The entries in the order `nix path-info` prints text: a depth-first walk
 * over the sorted set, each path after the paths it refers to (Nix 2.8
 * reverses its topoSortPaths). A chain of any depth is walked without recursion.
 */
export function referencesFirst(sorted: PathInfoEntry[]): PathInfoEntry[] {
  return referencesFirstBy(sorted, (e) => hashOf(e.path), (e) => (e.info?.narinfo?.referenceNames ?? []).map((n) => n.slice(0, HASH_PART_LEN)))
}

function hashOf(storePath: string): string {
  const base = storePath.slice(storePath.lastIndexOf('/') + 1)
  return base.slice(0, HASH_PART_LEN)
}

/** `store`, with PathInfo lookups answered from (and remembered in) `known`, keyed by hash part. */
function memoised(store: Store, known: Map<string, PathInfo>): Store {
  const pathInfos: PathInfoService = {
    get: async (digest) => {
      const hash = nixbase32.encode(digest)
      let info = known.get(hash)
      if (!info) {
        info = await store.pathInfos.get(digest)
        if (info) known.set(hash, info)
      }
      return info
    },
    put: (info) => store.pathInfos.put(info),
    list: () => store.pathInfos.list(),
  }
  return Object.assign(Object.create(store) as Store, { pathInfos })
}
