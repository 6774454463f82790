import { type BlobInfo, type BlobService, type BlobStage, type ByteSource, type Staging, iterateSource, type LocalReads, verifiedBuffer } from '../../castore/blob-service.js'
import { type B3Digest, b3Hasher, requireDigestLength, toHex } from '../../castore/digest.js'
import type { Directory } from '../../castore/directory.js'
import { bufferedStage, ClosureValidator, type DirectoryService, type DirectoryStage, walkClosure } from '../../castore/directory-service.js'
import { decodeDirectory, encodeDirectory } from '../../castore/proto.js'
import { decodePathInfo, encodePathInfo } from '../../store/proto.js'
import type { PathInfo, Signature } from '../../store/path-info.js'
import { checkPut, keepStored } from '../../store/path-info-admission.js'
import type { PathInfoService, SignatureAdding } from '../../store/path-info-service.js'
import { withSignatures } from '../../store/signing.js'
import { DEFAULT_STORE_DIR, DIGEST_LEN } from '../../store/store-path.js'
import type { Store } from '../../store/store.js'
import type { GarbageCollecting } from '../../store/capabilities.js'
import { collectMemoryGarbage } from './gc.js'
import * as nixbase32 from '../../store/nixbase32.js'
import type { BackendModule } from '../backend.js'
import type { MemoryAddress } from '../url-forms.js'
import type { CallOptions } from '../../util/call-options.js'

async function collect(src: ByteSource): Promise<{ data: Buffer; info: BlobInfo }> {
  const h = b3Hasher()
  const parts: Uint8Array[] = []
  for await (const c of iterateSource(src)) {
    h.update(c)
    parts.push(Uint8Array.from(c))
  }
  const data = Buffer.concat(parts)
  return { data, info: { digest: h.digest(), size: data.length } }
}

export class MemoryBlobService implements BlobService, Staging, LocalReads {
  readonly readsLocally = true
  readonly blobs = new Map<string, Buffer>()
  /** When each blob was last written (ms), for gc's grace period. */
  readonly writtenAt = new Map<string, number>()

  async has(d: B3Digest): Promise<boolean> {
    return this.blobs.has(toHex(requireDigestLength(d)))
  }

  async size(d: B3Digest): Promise<number | undefined> {
    return this.blobs.get(toHex(requireDigestLength(d)))?.length
  }

  async open(d: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined> {
    const data = this.blobs.get(toHex(requireDigestLength(d)))
    return data && verifiedBuffer(d, data)
  }

  async put(src: ByteSource): Promise<BlobInfo> {
    const { data, info } = await collect(src)
    this.blobs.set(toHex(info.digest), data)
    this.writtenAt.set(toHex(info.digest), Date.now())
    return info
  }

  stage(): BlobStage {
    const pending = new Map<string, Buffer>()
    return {
      put: async (src) => {
        const { data, info } = await collect(src)
        pending.set(toHex(info.digest), data)
        return info
      },
      commit: async () => {
        for (const [k, v] of pending) {
          this.blobs.set(k, v)
          this.writtenAt.set(k, Date.now())
        }
        pending.clear()
      },
      abort: async () => pending.clear(),
    }
  }
}

/** Stores encoded bytes, so what comes back out has gone through the codec like any backend. */
export class MemoryDirectoryService implements DirectoryService {
  readonly dirs = new Map<string, Uint8Array>()
  /** When each Directory was last written (ms), for gc's grace period. */
  readonly writtenAt = new Map<string, number>()

  /** With `blobs`, file sizes are checked against the blobs stored. */
  constructor(private readonly blobs?: Pick<BlobService, 'size'>) {}

  async get(d: B3Digest): Promise<Directory | undefined> {
    const bytes = this.dirs.get(toHex(requireDigestLength(d)))
    return bytes && decodeDirectory(bytes)
  }

  getClosure(root: B3Digest, opts?: CallOptions): AsyncIterable<Directory> {
    return walkClosure(root, (d) => this.get(d), opts?.signal)
  }

  async putClosure(dirs: Iterable<Directory> | AsyncIterable<Directory>): Promise<B3Digest> {
    const v = new ClosureValidator((d) => this.get(d), this.blobs?.size && ((d) => this.blobs!.size!(d)))
    const accepted = new Map<string, Uint8Array>()
    for await (const dir of dirs) accepted.set(toHex(await v.add(dir)), encodeDirectory(dir))
    const root = v.finish()
    for (const [k, bytes] of accepted) {
      this.dirs.set(k, bytes)
      this.writtenAt.set(k, Date.now())
    }
    return root
  }

  stage(): DirectoryStage {
    return bufferedStage(this)
  }
}

export class MemoryPathInfoService implements PathInfoService, SignatureAdding {
  readonly infos = new Map<string, Uint8Array>()
  /** Referrers index: hash part -> hash parts of the paths that refer to it. */
  private readonly referrerIndex = new Map<string, Set<string>>()

  constructor(private readonly storeDir = DEFAULT_STORE_DIR) {}

  async get(digest: Uint8Array): Promise<PathInfo | undefined> {
    const bytes = this.infos.get(nixbase32.encode(requireDigestLength(digest, DIGEST_LEN)))
    return bytes && decodePathInfo(bytes)
  }

  /** Valid, and never replacing a stored path; whether its data is stored is publishPathInfo's check (ops/publish.ts). */
  async put(info: PathInfo): Promise<PathInfo> {
    const { storeDir } = this
    const path = checkPut(info)
    // Check and set with no await in between: of concurrent puts of one path, exactly one writes.
    const key = nixbase32.encode(path.digest)
    const winner = this.infos.get(key)
    if (winner) return keepStored(decodePathInfo(winner), info, storeDir)
    this.infos.set(key, encodePathInfo(info))
    for (const r of info.references) {
      const k = nixbase32.encode(r)
      let set = this.referrerIndex.get(k)
      if (!set) this.referrerIndex.set(k, (set = new Set()))
      set.add(key)
    }
    return info
  }

  /** Read, merge and write with no await in between: concurrent additions all land. */
  async addSignatures(digest: Uint8Array, sigs: Signature[]): Promise<PathInfo | undefined> {
    const key = nixbase32.encode(requireDigestLength(digest, DIGEST_LEN))
    const bytes = this.infos.get(key)
    if (!bytes) return undefined
    const stored = decodePathInfo(bytes)
    const signed = withSignatures(stored, sigs)
    if (!signed) return stored
    this.infos.set(key, encodePathInfo(signed))
    return signed
  }

  async referrers(digest: Uint8Array): Promise<PathInfo[]> {
    const out: PathInfo[] = []
    for (const k of this.referrerIndex.get(nixbase32.encode(digest)) ?? []) {
      const bytes = this.infos.get(k)
      if (bytes) out.push(decodePathInfo(bytes))
    }
    return out
  }

  async *list(): AsyncIterable<PathInfo> {
    for (const bytes of this.infos.values()) yield decodePathInfo(bytes)
  }

  /** Forgets the PathInfo under hash part `key` and its referrers index entries (gc). */
  delete(key: string): void {
    const bytes = this.infos.get(key)
    if (!bytes) return
    this.infos.delete(key)
    for (const r of decodePathInfo(bytes).references) this.referrerIndex.get(nixbase32.encode(r))?.delete(key)
  }
}

/** A store held in this process, gone when it ends. It collects garbage (memory/gc.ts) and has no GC roots. */
export interface MemoryStore extends Store, GarbageCollecting {
  blobs: MemoryBlobService
  directories: MemoryDirectoryService
  pathInfos: MemoryPathInfoService
}

export function openMemoryStore(storeDir = DEFAULT_STORE_DIR): MemoryStore {
  const blobs = new MemoryBlobService()
  const directories = new MemoryDirectoryService(blobs)
  const pathInfos = new MemoryPathInfoService(storeDir)
  const store: MemoryStore = {
    blobs,
    directories,
    pathInfos,
    storeDir,
    collectGarbage: (opts) => collectMemoryGarbage(store, opts),
    close: async () => {},
  }
  return store
}

/** The registry's entry point: every `memory://` is a new, empty store. */
export const backend: BackendModule<MemoryAddress> = { open: async (_addr, ctx) => openMemoryStore(ctx.storeDir) }
