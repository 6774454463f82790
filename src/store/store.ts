import type { BlobService } from '../castore/blob-service.js'
import type { DirectoryService } from '../castore/directory-service.js'
import type { PathInfoService } from './path-info-service.js'

/** The three services a store URL opens, and the store dir its paths print under. */
export interface Store {
  blobs: BlobService
  directories: DirectoryService
  pathInfos: PathInfoService
  storeDir: string
  /**
   * Runs `fn` as one write session. A local store's gc waits for open
   * sessions and holds new ones off while it sweeps, so what a session
   * found stored stays stored until it has registered what relies on it.
   * Stores without a local gc just run `fn`.
   */
  writeSession<T>(fn: () => Promise<T>): Promise<T>
  close(): Promise<void>
}

/** writeSession for stores that have nothing to exclude. */
export function runNow<T>(fn: () => Promise<T>): Promise<T> {
  return fn()
}
