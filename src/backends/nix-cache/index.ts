import type { BackendModule } from '../backend.js'
import type { NixCacheAddress } from './address.js'
import { withNarSink } from './sink.js'
import { NixCacheStore } from './store.js'

export { NixCacheStore }

/** The registry's entry point: a Nix binary cache, read as a store (mustExist: its nix-cache-info is read at once). */
export const backend: BackendModule<NixCacheAddress> = {
  open: async (addr, ctx) => {
    // Asked only for https: a CA file named by the environment is read when TLS needs it.
    const tlsCa = addr.cache.location.kind === 'file' ? undefined : ctx.client?.tlsCa
    return withNarSink(await NixCacheStore.open(addr.cache, ctx.storeDir, { mustExist: ctx.mustExist, tlsCa }), addr.cache, ctx.storeDir, tlsCa)
  },
}
