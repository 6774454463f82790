import { type NarInfoFields, narInfoFields } from '../store/narinfo.js'
import type { Store } from '../store/store.js'
import { getPathInfo } from './resolve.js'

export async function narInfo(store: Store, arg: string): Promise<NarInfoFields> {
  const { info } = await getPathInfo(store, arg)
  return narInfoFields(info, store.storeDir)
}
