import type { LocalBlobService } from './blob.js'
import type { LocalDirectoryService } from './directory.js'
import type { LocalRoot } from './layout.js'
import type { ObjectGraph } from './object-graph.js'
import type { LocalPathInfoService } from './path-info.js'
import type { GcRoots } from './roots.js'

/**
 * What gc and verify work on: a local store's folder and services. Kept
 * apart from LocalStore (index.ts), which loads gc and verify lazily, so
 * that neither imports the module that imports it.
 */
export interface LocalStoreParts {
  readonly root: LocalRoot
  readonly storeDir: string
  readonly objects: ObjectGraph
  readonly blobs: LocalBlobService
  readonly directories: LocalDirectoryService
  readonly pathInfos: LocalPathInfoService
  readonly roots: GcRoots
}
