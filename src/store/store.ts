import type { BlobService } from '../castore/blob-service.js'
import type { DirectoryService } from '../castore/directory-service.js'
import type { PathInfoService } from './path-info-service.js'

/** The three services a store URL opens, and the store dir its paths print under. */
export interface Store {
  blobs: BlobService
  directories: DirectoryService
  pathInfos: PathInfoService
  storeDir: string
  close(): Promise<void>
}
