import { UnsupportedError } from '../errors.js'
import type { Store } from '../store/store.js'

/** Who asks for a capability, for the refusal: the command (`gc`, `import --root`) and the store as the user named it. */
export interface Caller {
  what?: string
  storeName?: string
}

/**
 * `store`, if it offers the capability `has` checks; else one
 * UnsupportedError saying what cannot run there and where it can.
 */
export function requireCapability<C>(store: Store, has: (s: Store) => s is Store & C, ability: string, caller: Caller & { what: string }): Store & C {
  if (has(store)) return store
  throw new UnsupportedError(
    `${caller.what} needs a store that can ${ability}, and ${caller.storeName ?? 'this store'} cannot: ` +
      `run it where the data lives (on the daemon's machine, against its store directory)`,
  )
}
