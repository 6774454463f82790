import { IntegrityError } from '../../errors.js'
import { decodePathInfo, encodePathInfo } from '../../store/proto.js'
import * as nixbase32 from '../../store/nixbase32.js'
import type { PathInfo, Signature } from '../../store/path-info.js'
import { checkPut, keepStored } from '../../store/path-info-admission.js'
import type { PathInfoService, SignatureAdding } from '../../store/path-info-service.js'
import { withSignatures } from '../../store/signing.js'
import type { CallOptions } from '../../util/call-options.js'
import { withFileLock } from './path-lock.js'
import { DEFAULT_STORE_DIR, DIGEST_LEN } from '../../store/store-path.js'
import { requireDigestLength } from '../../castore/digest.js'
import { HASH_PART } from './inventory.js'
import { type LocalRoot, readSmallFile } from './layout.js'
import type { WriteSession } from './locks.js'
import { ReferrersIndex } from './referrers.js'

export class LocalPathInfoService implements PathInfoService, SignatureAdding {
  readonly index: ReferrersIndex

  /** `session`: the write session this view reads and writes for (what it finds and publishes is relied on there), if any. */
  constructor(
    private readonly root: LocalRoot,
    private readonly storeDir = DEFAULT_STORE_DIR,
    private readonly session?: WriteSession,
  ) {
    this.index = new ReferrersIndex(root)
  }

  async get(digest: Uint8Array): Promise<PathInfo | undefined> {
    const hash = nixbase32.encode(requireDigestLength(digest, DIGEST_LEN))
    const file = this.root.pathInfoPath(hash)
    const bytes = readSmallFile(file)
    if (!bytes) return undefined
    // A write session that found a path (a reference, or one it skips copying) relies on it.
    this.session?.rely(file)
    try {
      return decodePathInfo(bytes)
    } catch (e) {
      throw new IntegrityError(`the stored PathInfo of ${hash} is corrupt (${(e as Error).message}); \`verify --repair\` removes it`)
    }
  }

  /** Valid, and never replacing a stored path; whether its data is stored is publishPathInfo's check (ops/publish.ts). */
  async put(info: PathInfo): Promise<PathInfo> {
    const { storeDir } = this
    const path = checkPut(info)
    const stored = await this.get(path.digest)
    if (stored) return keepStored(stored, info, storeDir)
    await this.root.init()
    // Everything this process renamed into place must be durable before the PathInfo that needs it.
    await this.root.sync()
    const file = this.root.pathInfoPath(nixbase32.encode(path.digest))
    return this.root.commit(this.session, async () => {
      // Index entries first, durable before the PathInfo's name, so a stored PathInfo always has them (referrers.ts).
      let entries: (() => Promise<void>) | undefined
      if (info.references.length > 0) {
        this.index.add(path.digest, info.references)
        entries = () => this.root.sync()
      }
      while (!(await this.root.writeNew(file, encodePathInfo(info), entries))) {
        entries = undefined
        // Another writer published this path since we looked: its PathInfo stands
        // (unless it is gone again already, when ours goes in after all).
        const winner = await this.get(path.digest)
        if (winner) return keepStored(winner, info, storeDir)
      }
      await this.root.sync()
      return info
    })
  }

  /**
   * Under a lock per path (another process may be signing it too), the
   * stored PathInfo with the new signatures is written to a temp file and
   * renamed over the old one: readers see the old or the new, never a mix.
   */
  async addSignatures(digest: Uint8Array, sigs: Signature[], opts?: CallOptions): Promise<PathInfo | undefined> {
    const hash = nixbase32.encode(requireDigestLength(digest, DIGEST_LEN))
    if (!(await this.get(digest))) return undefined
    return withFileLock(
      this.root.tmp,
      `sign-${hash}.lock`,
      async () => {
        const stored = await this.get(digest)
        const signed = stored && withSignatures(stored, sigs)
        if (!signed) return stored
        return this.root.commit(this.session, async () => {
          // Sweeps are held off here: one that deleted the path since must not see it come back.
          if (!readSmallFile(this.root.pathInfoPath(hash))) return undefined
          await this.root.writeAtomic(this.root.pathInfoPath(hash), encodePathInfo(signed), this.session)
          await this.root.sync()
          return signed
        })
      },
      opts?.signal,
    )
  }

  /**
   * From the index; a store that predates it (version < 3, until its first
   * write builds it) is scanned instead. Entries whose referrer is gone or
   * no longer refers to the path are stale and skipped.
   */
  async referrers(digest: Uint8Array): Promise<PathInfo[]> {
    const refersTo = (info: PathInfo) => info.references.some((r) => Buffer.compare(r, digest) === 0)
    const out: PathInfo[] = []
    if (!this.root.indexed) {
      try {
        for await (const info of this.list()) if (refersTo(info)) out.push(info)
      } catch (e) {
        // list() ends with a corrupt PathInfo after every intact one: skipped, as below (verify reports it).
        if (!(e instanceof IntegrityError)) throw e
      }
      return out
    }
    for (const name of this.index.candidates(nixbase32.encode(digest))) {
      let info: PathInfo | undefined
      try {
        info = await this.get(nixbase32.decode(name))
      } catch {
        continue // a stray name, or a corrupt PathInfo (verify reports it)
      }
      if (info && refersTo(info)) out.push(info)
    }
    return out
  }

  /**
   * Every PathInfo, by hash part. A corrupt one is not left out silently
   * (a listing that looks complete would hide the damage, as `nix
   * path-info --all` on a broken database fails too): the intact ones
   * come first, then the first corrupt one is the error (`verify --repair`
   * removes it). Names that are not hash parts are not PathInfos.
   */
  async *list(): AsyncIterable<PathInfo> {
    let corrupt: IntegrityError | undefined
    for (const name of this.root.pathInfoNames().filter((n) => HASH_PART.test(n)).sort()) {
      let info: PathInfo | undefined
      try {
        info = await this.get(nixbase32.decode(name))
      } catch (e) {
        if (!(e instanceof IntegrityError)) throw e
        corrupt ??= e
        continue
      }
      if (info) yield info
    }
    if (corrupt) throw corrupt
  }
}
