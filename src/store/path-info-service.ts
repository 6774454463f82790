import type { CallOptions } from '../util/call-options.js'
import type { PathInfo, Signature } from './path-info.js'

/** PathInfos keyed by the 20-byte digest of their store path. */
export interface PathInfoService {
  get(storePathDigest: Uint8Array, opts?: CallOptions): Promise<PathInfo | undefined>
  /**
   * Stores a valid PathInfo (validatePathInfo, each reference once) and
   * returns what is stored. A path already stored is never replaced: the
   * same content again returns what is stored, different content is an
   * AlreadyExistsError (of concurrent puts of one path, exactly one wins).
   * Whether its tree and references are stored is not the service's
   * concern: publishPathInfo (ops/publish.ts) checks that, over the
   * store's own blob and directory services, whichever backends serve them.
   */
  put(info: PathInfo, opts?: CallOptions): Promise<PathInfo>
  list(opts?: CallOptions): AsyncIterable<PathInfo>
  /**
   * Optional: the stored paths whose references include this one (itself
   * too, if it refers to itself), in no particular order. Stores that keep
   * an index implement it (local, memory); the tvix gRPC protocol has no
   * such call, so a gRPC client does not, and callers refuse rather than
   * scan every PathInfo over the wire.
   */
  referrers?(storePathDigest: Uint8Array, opts?: CallOptions): Promise<PathInfo[]>
}

/**
 * A PathInfoService whose put admits on the far side (a daemon runs
 * publishPathInfo on its own store for every Put), so publishing through
 * it skips the client-side walk: no extra round trips per Directory and blob.
 */
export interface AdmitsOnPut {
  readonly admitsOnPut: true
}

export function admitsOnPut(s: PathInfoService): s is PathInfoService & AdmitsOnPut {
  return (s as Partial<AdmitsOnPut>).admitsOnPut === true
}

/** A store with a referrers index (see PathInfoService.referrers). */
export function hasReferrers(pathInfos: PathInfoService): pathInfos is PathInfoService & Required<Pick<PathInfoService, 'referrers'>> {
  return typeof pathInfos.referrers === 'function'
}

/**
 * A PathInfoService that can add signatures to a stored path, the one
 * change a stored PathInfo may undergo (as Nix's addSignatures): the
 * signatures not already there are appended, atomically (of concurrent
 * additions none is lost), nothing else changes. Returns what is stored
 * then, undefined if the path is absent. The tvix gRPC protocol has no
 * such call (its Put never replaces), so a gRPC client lacks it.
 */
export interface SignatureAdding {
  addSignatures(storePathDigest: Uint8Array, sigs: Signature[], opts?: CallOptions): Promise<PathInfo | undefined>
}
