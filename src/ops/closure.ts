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
