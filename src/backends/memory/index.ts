import { type BlobInfo, type BlobService, type BlobStage, type ByteSource, iterateSource, type LocalReads, verifiedBuffer } from '../../castore/blob-service.js'
import { type B3Digest, b3Hasher, toHex } from '../../castore/digest.js'
import type { Directory } from '../../castore/directory.js'
import { bufferedStage, ClosureValidator, type DirectoryService, type DirectoryStage, walkClosure } from '../../castore/directory-service.js'
import { decodeDirectory, decodePathInfo, encodeDirectory, encodePathInfo } from '../../proto/codec.js'
import type { PathInfo } from '../../store/path-info.js'
import { admitPathInfo, keepStored } from '../../store/path-info-admission.js'
import type { PathInfoService, PutOptions } from '../../store/path-info-service.js'
import { DEFAULT_STORE_DIR } from '../../store/store-path.js'
import type { Store } from '../../store/store.js'
import * as nixbase32 from '../../store/nixbase32.js'

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

export class MemoryBlobService implements BlobService, LocalReads {
  readonly readsLocally = true
  readonly blobs = new Map<string, Buffer>()

  async has(d: B3Digest): Promise<boolean> {
    return this.blobs.has(toHex(d))
  }

  async size(d: B3Digest): Promise<number | undefined> {
    return this.blobs.get(toHex(d))?.length
  }

  async open(d: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined> {
    const data = this.blobs.get(toHex(d))
    return data && verifiedBuffer(d, data)
  }

  async put(src: ByteSource): Promise<BlobInfo> {
    const { data, info } = await collect(src)
    this.blobs.set(toHex(info.digest), data)
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
        for (const [k, v] of pending) this.blobs.set(k, v)
        pending.clear()
      },
      abort: async () => pending.clear(),
    }
  }
}

/** Stores encoded bytes, so what comes back out has gone through the codec like any backend. */
export class MemoryDirectoryService implements DirectoryService {
  readonly dirs = new Map<string, Uint8Array>()

  /** With `blobs`, file sizes are checked against the blobs stored. */
  constructor(private readonly blobs?: Pick<BlobService, 'size'>) {}

  async get(d: B3Digest): Promise<Directory | undefined> {
    const bytes = this.dirs.get(toHex(d))
    return bytes && decodeDirectory(bytes)
  }

  getClosure(root: B3Digest): AsyncIterable<Directory> {
    return walkClosure(root, (d) => this.get(d))
  }

  async putClosure(dirs: Iterable<Directory> | AsyncIterable<Directory>): Promise<B3Digest> {
    const v = new ClosureValidator((d) => this.get(d), this.blobs?.size && ((d) => this.blobs!.size!(d)))
    const accepted = new Map<string, Uint8Array>()
    for await (const dir of dirs) accepted.set(toHex(await v.add(dir)), encodeDirectory(dir))
    const root = v.finish()
    for (const [k, bytes] of accepted) this.dirs.set(k, bytes)
    return root
  }

  stage(): DirectoryStage {
    return bufferedStage(this)
  }
}

export class MemoryPathInfoService implements PathInfoService {
  readonly infos = new Map<string, Uint8Array>()
  /** Referrers index: hash part -> hash parts of the paths that refer to it. */
  private readonly referrerIndex = new Map<string, Set<string>>()

  constructor(
    private readonly blobs: BlobService,
    private readonly directories: DirectoryService,
    private readonly storeDir = DEFAULT_STORE_DIR,
  ) {}

  async get(digest: Uint8Array): Promise<PathInfo | undefined> {
    const bytes = this.infos.get(nixbase32.encode(digest))
    return bytes && decodePathInfo(bytes)
  }

  async put(info: PathInfo, opts?: PutOptions): Promise<PathInfo> {
    const { blobs, directories, storeDir } = this
    const { path, stored } = await admitPathInfo(info, { blobs, directories, pathInfos: this, storeDir }, opts)
    if (stored) return stored
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
}

export function openMemoryStore(storeDir = DEFAULT_STORE_DIR): Store {
  const blobs = new MemoryBlobService()
  const directories = new MemoryDirectoryService(blobs)
  return { blobs, directories, pathInfos: new MemoryPathInfoService(blobs, directories, storeDir), storeDir, close: async () => {} }
}
