import { type AdmissionOptions, admitPathInfo } from '../store/path-info-admission.js'
import type { PathInfo } from '../store/path-info.js'
import { admitsOnPut } from '../store/path-info-service.js'
import type { Store } from '../store/store.js'

export type PublishOptions = AdmissionOptions

/**
 * Makes a PathInfo visible, once its data is there: admitted (valid, the
 * whole tree and every reference stored, a content address consistent:
 * admitPathInfo, MissingDataError for what is absent) against the store's
 * own blob and directory services, whichever backends serve them, then
 * put (never replacing a stored path). Returns what is stored. A
 * PathInfoService that admits on its side (a daemon) is trusted to,
 * rather than walked over the wire first.
 */
export async function publishPathInfo(store: Store, info: PathInfo, opts: PublishOptions = {}): Promise<PathInfo> {
  if (!admitsOnPut(store.pathInfos)) {
    const { stored } = await admitPathInfo(info, store, opts)
    if (stored) return stored
  }
  return store.pathInfos.put(info, { signal: opts.signal })
}
