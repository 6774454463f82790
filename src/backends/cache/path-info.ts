import { CastoreTransfer } from '../../castore/transfer.js'
import { NotFoundError } from '../../errors.js'
import * as nixbase32 from '../../store/nixbase32.js'
import { type PathInfo, type Signature, storePathOf } from '../../store/path-info.js'
import type { PathInfoService } from '../../store/path-info-service.js'
import type { CallOptions } from '../../util/call-options.js'
import { absolute } from '../../store/store-path.js'
import type { Store } from '../../store/store.js'
import { canAddSignatures, inWriteSession } from '../../store/capabilities.js'
import { runDag } from '../../util/dag.js'
import { forEachLimit } from '../../util/pool.js'

/** PathInfo lookups in flight while finding what the near store lacks. */
const LOOKUPS_IN_FLIGHT = 64
/** Paths filled at once. */
const FILLS_AT_ONCE = 4

/**
 * PathInfos from `near` when it has them, else from `far`. A path found
 * far is filled into `near` before it is returned: its closure's
 * PathInfos, trees and blobs, references first, as Nix substitutes a path
 * (a store holds a path only with its references), so `near` stays a
 * store that stands on its own and every later read of the path is local.
 * Writes go to `far`, then to `near`; listing asks `far`, which holds
 * everything `near` caches.
 */
export class CachePathInfoService implements PathInfoService {
  referrers?: (storePathDigest: Uint8Array) => Promise<PathInfo[]>
  addSignatures?: (storePathDigest: Uint8Array, sigs: Signature[], opts?: CallOptions) => Promise<PathInfo | undefined>

  constructor(
    private readonly near: Store,
    private readonly far: Store,
  ) {
    // Only the far store knows every path that refers to one.
    if (far.pathInfos.referrers) this.referrers = (d) => far.pathInfos.referrers!(d)
    // Only where both sides can: a near copy left without them would be served with stale signatures.
    if (canAddSignatures(far) && canAddSignatures(near)) {
      this.addSignatures = async (d, sigs, opts) => {
        const signed = await far.pathInfos.addSignatures(d, sigs, opts)
        if (signed) await near.pathInfos.addSignatures(d, sigs, opts)
        return signed
      }
    }
  }

  async get(digest: Uint8Array): Promise<PathInfo | undefined> {
    const here = await this.near.pathInfos.get(digest)
    if (here) return here
    const there = await this.far.pathInfos.get(digest)
    return there && this.fill(there)
  }

  async put(info: PathInfo, opts?: CallOptions): Promise<PathInfo> {
    const stored = await this.far.pathInfos.put(info, opts)
    return this.fill(stored, opts)
  }

  list(): AsyncIterable<PathInfo> {
    return this.far.pathInfos.list()
  }

  /** Puts `info` into `near` after whatever of its closure `near` lacks; returns what `near` stored. */
  private fill(info: PathInfo, opts?: CallOptions): Promise<PathInfo> {
    const { far } = this
    return inWriteSession(this.near, async (near) => {
      const root = nixbase32.encode(storePathOf(info).digest)
      const lacking = new Map<string, PathInfo>([[root, info]])
      // Breadth-first over references, a level at a time, down to paths near has.
      for (let level = [info]; level.length > 0; ) {
        const next: PathInfo[] = []
        const refs = new Set(level.flatMap((i) => i.references.map((r) => nixbase32.encode(r))).filter((h) => !lacking.has(h)))
        await forEachLimit(refs, LOOKUPS_IN_FLIGHT, async (h) => {
          if (await near.pathInfos.get(nixbase32.decode(h))) return
          const ref = await far.pathInfos.get(nixbase32.decode(h))
          if (!ref) throw new NotFoundError(`path '${absolute(storePathOf(info), far.storeDir)}' needs ${h} (in its closure), which the far store lacks`)
          lacking.set(h, ref)
          next.push(ref)
        })
        level = next
      }
      const transfer = new CastoreTransfer(far, near)
      let stored = info
      const references = (h: string) => lacking.get(h)!.references.map((r) => nixbase32.encode(r))
      await runDag(lacking.keys(), references, FILLS_AT_ONCE, async (h) => {
        const p = lacking.get(h)!
        await transfer.tree(p.node)
        const s = await near.pathInfos.put(p, h === root ? opts : undefined)
        if (h === root) stored = s
      })
      return stored
    })
  }
}
