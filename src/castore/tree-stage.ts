import { type BlobService, type BlobStage, stageOrWriteThrough } from './blob-service.js'
import { type B3Digest, b3 } from './digest.js'
import { type DirectoryService, type DirectoryStage, requireServableBytes } from './directory-service.js'
import type { DirectoryNode } from './node.js'
import type { DirectoryEncoder } from './proto.js'

/**
 * Where an ingest puts a tree until it is committed: blobs and Directories,
 * each staged as the walk finishes it, so the ingest holds no tree (memory
 * follows the depth of the walk, not the number of files).
 */
export interface TreeStage {
  blobs: BlobStage
  directories: DirectoryStage
}

/** What an ingest reports of each object it stages (e.g. to count what is new to the store). */
export interface TreeObserver {
  file(digest: B3Digest, size: number): void
  directory(digest: B3Digest): void
}

/** A stage on `store`'s blobs (write-through where it cannot stage) and Directories. */
export function stageTree(store: { blobs: BlobService; directories: DirectoryService }): TreeStage {
  return { blobs: stageOrWriteThrough(store.blobs), directories: store.directories.stage() }
}

/**
 * Blobs first, then the Directories leaves first: nothing visible names
 * what is not stored. The Directories' bytes are made durable while the
 * blobs commit (nothing visible changes), so theirs waits only on the renames.
 */
export async function commitTreeStage(stage: TreeStage): Promise<void> {
  await Promise.all([stage.blobs.commit(), stage.directories.prepare?.()])
  await stage.directories.commit()
}

export async function abortTreeStage(stage: TreeStage): Promise<void> {
  const results = await Promise.allSettled([stage.blobs.abort(), stage.directories.abort()])
  for (const r of results) if (r.status === 'rejected') throw r.reason
}

/**
 * Stages the Directory of the entries given `dir` (in name order), once
 * it is checked to be servable (refused before anything commits: a store
 * never holds what it cannot serve); its (unnamed) node.
 */
export async function stageDirectory(stage: DirectoryStage, dir: DirectoryEncoder, observe?: TreeObserver): Promise<DirectoryNode> {
  const bytes = dir.finish()
  requireServableBytes(bytes)
  const digest = b3(bytes)
  await stage.put(digest, bytes)
  observe?.directory(digest)
  return { kind: 'directory', name: EMPTY, digest, size: dir.size }
}

const EMPTY = new Uint8Array(0)
