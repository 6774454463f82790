import { NotFoundError, UsageError } from '../errors.js'
import { storePathOf } from '../store/path-info.js'
import { canAddSignatures } from '../store/capabilities.js'
import { type SecretKey, signPathInfo, withSignatures } from '../store/signing.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/pool.js'
import { queryPathInfos } from './path-info.js'
import { type Caller, requireCapability } from './require-capability.js'

/** Paths signed at once (each a read and, where the signature is new, a write). */
const SIGNING_IN_FLIGHT = 8

export interface SignRequest {
  key: SecretKey
  all?: boolean
  /** The closures of the paths, by references. */
  recursive?: boolean
}

export interface SignReport {
  /** The paths considered, sorted. */
  paths: string[]
  /** How many of them gained the signature (the others had it). */
  added: number
}

/**
 * Adds `key`'s signature to each path, as `nix store sign` does: the
 * signature Nix would make (Ed25519 is deterministic), stored beside the
 * ones the path has. Refused on a store whose PathInfos cannot gain
 * signatures (over gRPC), before anything is read.
 */
export async function signPaths(store: Store, args: string[], req: SignRequest, caller: Caller): Promise<SignReport> {
  // Checked here so the message says what the paths are for (queryPathInfos would say "describe").
  if (!req.all && args.length === 0) throw new UsageError('give the store paths to sign, or --all')
  const s = requireCapability(store, canAddSignatures, 'add signatures to stored paths', { ...caller, what: caller.what ?? 'sign' })
  const entries = await queryPathInfos(s, args, { all: req.all, recursive: req.recursive })
  let added = 0
  await forEachLimit(entries, SIGNING_IN_FLIGHT, async ({ path, info }) => {
    if (!info) return // not reached: queryPathInfos refuses invalid paths here
    const sig = signPathInfo(info, req.key, s.storeDir)
    if (!withSignatures(info, [sig])) return
    // Gone since it was read (deleted, collected): nothing to sign.
    if (!(await s.pathInfos.addSignatures(storePathOf(info).digest, [sig]))) throw new NotFoundError(`path '${path}' is not valid`)
    added++
  })
  return { paths: entries.map((e) => e.path), added }
}
