import type { BlobService } from '../castore/blob-service.js'
import type { DirectoryService } from '../castore/directory-service.js'
import type { PathInfoService } from './path-info-service.js'

/**
 * The three services a store URL opens, and the store dir its paths print
 * under. What only some stores can do (write sessions, temp roots, gc,
 * verify, GC roots) is an optional capability: see capabilities.ts.
 */
export interface Store {
  blobs: BlobService
  directories: DirectoryService
  pathInfos: PathInfoService
  storeDir: string
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
  /**
   * Keeps objects about to be published (by a commit that follows), in one
   * step: a name of nothing keeps nothing. Optional: holdIf per name where
   * a store lacks it.
   */
  holdAll?(kind: TempRootKind, names: string[]): Promise<void>
  release(): void
}
