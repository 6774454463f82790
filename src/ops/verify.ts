import { hasVerifying, type VerifyOptions, type VerifyReport } from '../store/capabilities.js'
import type { Store } from '../store/store.js'
import { type Caller, requireCapability } from './require-capability.js'

export type { VerifyOptions, VerifyReport }

/** Checks (and with `repair` mends) the store, where it can check itself; else one UnsupportedError. */
export async function verifyStore(store: Store, opts: VerifyOptions = {}, caller: Caller = {}): Promise<VerifyReport> {
  return requireCapability(store, hasVerifying, 'verify its own data', { what: 'verify', ...caller }).verify(opts)
}
