import { NotFoundError, UsageError } from '../errors.js'
import * as nixbase32 from '../store/nixbase32.js'
import type { PathInfo } from '../store/path-info.js'
import { parseStorePathArg } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/pool.js'

/** PathInfo lookups in flight at once: a remote store answers each in a round trip. */
const LOOKUPS_IN_FLIGHT = 64

/** The PathInfos of `args` and of everything they refer to, keyed by hash part. */
export async function closureOf(from: Store, args: string[]): Promise<Map<string, PathInfo>> {
  const closure = new Map<string, PathInfo>()
  let frontier: Uint8Array[] = args.map((a) => {
    const { path, sub } = parseStorePathArg(a, from.storeDir)
    if (sub.length > 0) throw new UsageError(`'${a}' is a path inside a store path; give the store path itself`)
    return path.digest
  })
  const named = new Map(args.map((a) => [nixbase32.encode(parseStorePathArg(a, from.storeDir).path.digest), a]))
  while (frontier.length > 0) {
    const next: Uint8Array[] = []
    await forEachLimit(frontier, LOOKUPS_IN_FLIGHT, async (digest) => {
      const hash = nixbase32.encode(digest)
      if (closure.has(hash)) return
      const info = await from.pathInfos.get(digest)
      if (!info) {
        const what = named.get(hash) ?? `${from.storeDir}/${hash}-…`
        throw new NotFoundError(`path '${what}' is not valid in the source store`)
      }
      if (closure.has(hash)) return
      closure.set(hash, info)
      for (const r of info.references) if (!closure.has(nixbase32.encode(r))) next.push(r)
    })
    frontier = next
  }
  return closure
}

/**
 * Nix 2.8's topoSortPaths, reversed as `nix-store -q` and `nix path-info`
 * print it: a depth-first post-order over `items` in the order given
 * (callers sort by base name, as Nix's sets are), following each item's
 * references (by hash part, in order) that are among the items, itself
 * left out. So each path comes after the paths it refers to. Iterative: a
 * chain of any depth is walked without recursion. (Valid stores have no
 * cycles: a path's references were stored before it.)
 */
export function referencesFirst<T>(items: T[], hashOf: (item: T) => string, references: (item: T) => string[]): T[] {
  const byHash = new Map(items.map((i) => [hashOf(i), i]))
  const children = (item: T) =>
    [...references(item)]
      .sort()
      .map((h) => byHash.get(h))
      .filter((c): c is T => c !== undefined && c !== item)
  const out: T[] = []
  const visited = new Set<T>()
  for (const start of items) {
    if (visited.has(start)) continue
    visited.add(start)
    const stack = [{ item: start, next: children(start), i: 0 }]
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!
      const child = top.next[top.i++]
      if (child === undefined) {
        out.push(top.item)
        stack.pop()
      } else if (!visited.has(child)) {
        visited.add(child)
        stack.push({ item: child, next: children(child), i: 0 })
      }
    }
  }
  return out
}
