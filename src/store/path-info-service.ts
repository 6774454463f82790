import type { CallOptions } from '../util/call-options.js'
import type { PathInfo } from './path-info.js'

export interface PutOptions extends CallOptions {
  /**
   * NarHash and NarSize were computed by this process from the very bytes
   * it stored (an import), so a content address is not checked by
   * rendering the NAR again. Never set for a PathInfo from elsewhere.
   */
  narComputedHere?: boolean
}

/** PathInfos keyed by the 20-byte digest of their store path. */
export interface PathInfoService {
  get(storePathDigest: Uint8Array, opts?: CallOptions): Promise<PathInfo | undefined>
  /**
   * Admits (admitPathInfo: valid, tree and references stored, content
   * address consistent) and stores; returns the stored PathInfo. A path
   * already stored is never replaced: the same content again returns what
   * is stored, different content is an AlreadyExistsError.
   */
  put(info: PathInfo, opts?: PutOptions): Promise<PathInfo>
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
