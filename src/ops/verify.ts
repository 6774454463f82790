import { hasVerifying, type VerifyOptions, type VerifyReport, type Problem } from '../store/capabilities.js'
import { type PathInfo, storePathOf } from '../store/path-info.js'
import { type PublicKey, validSignatureCount } from '../store/signing.js'
import { absolute, type StorePath } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { type Caller, requireCapability } from './require-capability.js'

export type { VerifyOptions, VerifyReport }

/** With trusted keys, verify also checks signatures, as `nix store verify --sigs-needed N` does. */
export interface TrustOptions {
  trustedKeys: PublicKey[]
  /** Valid signatures by trusted keys each path needs (at least 1, as Nix counts). */
  sigsNeeded: number
}

/** Checks (and with `repair` mends) the store, where it can check itself; else one UnsupportedError. */
export async function verifyStore(store: Store, opts: VerifyOptions = {}, caller: Caller = {}, trust?: TrustOptions): Promise<VerifyReport> {
  const report = await requireCapability(store, hasVerifying, 'verify its own data', { what: 'verify', ...caller }).verify(opts)
  if (trust) report.problems.push(...(await untrustedPaths(store, opts.paths, trust)))
  return report
}

/**
 * The paths (all of them when `paths` is undefined) without enough valid
 * signatures by trusted keys, in Nix's words. A content-addressed path is
 * trusted unsigned, as by Nix: its address is checked against its NAR
 * when it is stored.
 */
async function untrustedPaths(store: Store, paths: StorePath[] | undefined, trust: TrustOptions): Promise<Problem[]> {
  const needed = Math.max(trust.sigsNeeded, 1)
  const problems: Problem[] = []
  const check = (info: PathInfo) => {
    if (info.narinfo?.ca) return
    if (validSignatureCount(info, trust.trustedKeys, store.storeDir) < needed) {
      problems.push({ message: `path '${absolute(storePathOf(info), store.storeDir)}' is untrusted` })
    }
  }
  if (paths) {
    // A path that is not stored is already a problem of its own.
    for (const p of paths) {
      const info = await store.pathInfos.get(p.digest)
      if (info) check(info)
    }
  } else {
    for await (const info of store.pathInfos.list()) check(info)
  }
  return problems
}
