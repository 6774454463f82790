import path from 'node:path'
import { DEFAULT_STORE_DIR } from '../../store/store-path.js'
import type { Store, TempRoots } from '../../store/store.js'
import { LocalBlobService } from './blob.js'
import { LocalDirectoryService } from './directory.js'
import { LocalRoot } from './layout.js'
import { LocalPathInfoService } from './path-info.js'
import { GcRoots } from './roots.js'
import { LocalTempRoots } from './temp-roots.js'

/** A store in a local directory: the three services, plus what only runs where the data lives (gc roots, gc, verify). */
export class LocalStore implements Store {
  readonly blobs: LocalBlobService
  readonly directories: LocalDirectoryService
  readonly pathInfos: LocalPathInfoService
  readonly roots: GcRoots

  constructor(
    readonly root: LocalRoot,
    readonly storeDir: string,
  ) {
    this.blobs = new LocalBlobService(root)
    this.directories = new LocalDirectoryService(root, this.blobs)
    this.pathInfos = new LocalPathInfoService(root, this.blobs, this.directories, storeDir)
    this.roots = new GcRoots(root, storeDir)
  }

  writeSession<T>(fn: () => Promise<T>): Promise<T> {
    return this.root.locks.session(fn)
  }

  tempRoots(): TempRoots {
    return new LocalTempRoots(this.root.root, this.root.locks)
  }

  async close(): Promise<void> {}
}

/** Opens (without creating: the first write does) a local store rooted at `dir`. */
export async function openLocalStore(dir: string, storeDir = DEFAULT_STORE_DIR): Promise<LocalStore> {
  const root = new LocalRoot(path.resolve(dir))
  await root.checkFormat().catch((e) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw e
  })
  return new LocalStore(root, storeDir)
}
