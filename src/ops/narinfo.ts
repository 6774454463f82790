import { UsageError } from '../errors.js'
import type { PathInfo } from '../store/path-info.js'
import { parseStorePathArg } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { getPathInfo } from './resolve.js'

/** The PathInfo a narinfo describes; a path inside a store path has none, so that is an error. */
export async function narInfo(store: Store, arg: string): Promise<PathInfo> {
  const { sub } = parseStorePathArg(arg, store.storeDir)
  if (sub.length > 0) throw new UsageError(`'${arg}' is a path inside a store path; narinfo describes whole store paths`)
  return (await getPathInfo(store, arg)).info
}
