import type { BackendModule } from '../backend.js'
import type { NixCacheAddress } from './address.js'
import { NixCacheStore } from './store.js'

export { NixCacheStore }

/** The registry's entry point: a Nix binary cache, read as a store (mustExist: its nix-cache-info is read at once). */
export const backend: BackendModule<NixCacheAddress> = {
  open: (addr, ctx) => NixCacheStore.open(addr.cache, ctx.storeDir, { mustExist: ctx.mustExist }),
}
