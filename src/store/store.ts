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
  /** Temp roots for one client of a daemon; stores without a gc of their own lack them. */
  tempRoots?(): TempRoots
  close(): Promise<void>
}

export type TempRootKind = 'blob' | 'dir' | 'pathinfo'

/**
 * What one daemon client was told is stored, or sent: kept from gc until
 * `release` (its connection closed), as Nix's temp roots keep store paths.
 */
export interface TempRoots {
  /**
   * Runs `present` with sweeps held off and, if it says yes, keeps the
   * object (hex digest, or a PathInfo's hash part) until release.
   */
  holdIf(kind: TempRootKind, name: string, present: () => Promise<boolean>): Promise<boolean>
  release(): void
}

/** writeSession for stores that have nothing to exclude. */
export function runNow<T>(fn: () => Promise<T>): Promise<T> {
  return fn()
}
