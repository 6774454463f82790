import path from 'node:path'
import { DEFAULT_STORE_DIR } from '../../store/store-path.js'
import type { Store } from '../../store/store.js'
import { LocalBlobService } from './blob.js'
import { LocalDirectoryService } from './directory.js'
import { LocalRoot } from './layout.js'
import { LocalPathInfoService } from './path-info.js'

/** Opens (without creating: the first write does) a local store rooted at `dir`. */
export async function openLocalStore(dir: string, storeDir = DEFAULT_STORE_DIR): Promise<Store> {
  const root = new LocalRoot(path.resolve(dir))
  await root.checkFormat().catch((e) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw e
  })
  const blobs = new LocalBlobService(root)
  const directories = new LocalDirectoryService(root)
  const pathInfos = new LocalPathInfoService(root, blobs, directories)
  return { blobs, directories, pathInfos, storeDir, close: async () => {} }
}
