import type { BlobService } from '../castore/blob-service.js'
import type { DirectoryService } from '../castore/directory-service.js'
import { NotFoundError } from '../errors.js'
import type { PathInfo } from './path-info.js'

/** PathInfos keyed by the 20-byte digest of their store path. */
export interface PathInfoService {
  get(storePathDigest: Uint8Array): Promise<PathInfo | undefined>
  /** Validates and stores; the castore data it names must already be stored. */
  put(info: PathInfo): Promise<PathInfo>
  list(): AsyncIterable<PathInfo>
}

/** Refuses a PathInfo whose root blob or Directory is not stored. */
export async function requireRootData(info: PathInfo, blobs: BlobService, directories: DirectoryService): Promise<void> {
  const n = info.node
  if (n.kind === 'file' && !(await blobs.has(n.digest))) throw new NotFoundError('PathInfo refers to a blob that is not stored')
  if (n.kind === 'directory' && !(await directories.get(n.digest))) {
    throw new NotFoundError('PathInfo refers to a directory that is not stored')
  }
}
