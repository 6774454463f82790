import fs from 'node:fs/promises'
import path from 'node:path'
import type { BlobService } from '../../castore/blob-service.js'
import type { DirectoryService } from '../../castore/directory-service.js'
import { IntegrityError } from '../../errors.js'
import { decodePathInfo, encodePathInfo } from '../../proto/codec.js'
import * as nixbase32 from '../../store/nixbase32.js'
import { type PathInfo, validatePathInfo } from '../../store/path-info.js'
import { type PathInfoService, requireRootData } from '../../store/path-info-service.js'
import { type LocalRoot, readSmallFile } from './layout.js'

export class LocalPathInfoService implements PathInfoService {
  constructor(
    private readonly root: LocalRoot,
    private readonly blobs: BlobService,
    private readonly directories: DirectoryService,
  ) {}

  async get(digest: Uint8Array): Promise<PathInfo | undefined> {
    const hash = nixbase32.encode(digest)
    const file = this.root.pathInfoPath(hash)
    const bytes = readSmallFile(file)
    if (!bytes) return undefined
    // A write session that found a path (a reference, or one it skips copying) relies on it.
    this.root.rely(file)
    try {
      return decodePathInfo(bytes)
    } catch (e) {
      throw new IntegrityError(`the stored PathInfo of ${hash} is corrupt (${(e as Error).message}); \`verify --repair\` removes it`)
    }
  }

  async put(info: PathInfo): Promise<PathInfo> {
    const sp = validatePathInfo(info)
    await this.root.init()
    await requireRootData(info, this.blobs, this.directories)
    // Everything this process renamed into place must be durable before the PathInfo that needs it.
    await this.root.sync()
    await this.root.commit(async () => {
      await this.root.writeAtomic(this.root.pathInfoPath(nixbase32.encode(sp.digest)), encodePathInfo(info))
      await this.root.sync()
    })
    return info
  }

  async *list(): AsyncIterable<PathInfo> {
    const dir = path.dirname(this.root.pathInfoPath('x'))
    let names: string[]
    try {
      names = await fs.readdir(dir)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
      throw e
    }
    for (const name of names.sort()) {
      const info = await this.get(nixbase32.decode(name)).catch(() => undefined)
      if (info) yield info
    }
  }
}
