import { UsageError } from '../errors.js'
import { type NarInfoFields, narInfoFields } from '../store/narinfo.js'
import { parseStorePathArg } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { getPathInfo } from './resolve.js'

/** The narinfo of a store path; a path inside one has none, so that is an error. */
export async function narInfo(store: Store, arg: string): Promise<NarInfoFields> {
  const { sub } = parseStorePathArg(arg, store.storeDir)
  if (sub.length > 0) throw new UsageError(`'${arg}' is a path inside a store path; narinfo describes whole store paths`)
  const { info } = await getPathInfo(store, arg)
  return narInfoFields(info, store.storeDir)
}
