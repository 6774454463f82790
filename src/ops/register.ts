import { renameNode } from '../castore/node.js'
import { abortTreeStage, commitTreeStage, stageTree, type TreeStage } from '../castore/tree-stage.js'
import type { IngestResult } from '../store/ingest-fs.js'
import { CaHash, type PathInfo } from '../store/path-info.js'
import { absolute, basename, makeSourcePath } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { inWriteSession } from '../store/capabilities.js'
import { publishPathInfo } from './publish.js'

export interface Imported {
  storePath: string
  narSize: number
  narSha256: Uint8Array
  info: PathInfo
}

/**
 * Makes an ingested tree visible, in the only safe order: blobs, then
 * Directories (leaves first), then the PathInfo that points at them.
 */
export async function publishIngested(store: Store, stage: TreeStage, info: PathInfo): Promise<void> {
  await commitTreeStage(stage)
  // The ingest hashed the very bytes it staged: no need to render the NAR again to check it.
  await publishPathInfo(store, info, { narComputedHere: true })
}

/**
 * Registers an ingested tree under the store path `nix-store --add`
 * computes: type `source`, NAR SHA-256, no references.
 */
export async function registerSource(store: Store, ingested: IngestResult, stage: TreeStage, name: string): Promise<Imported> {
  const path = makeSourcePath(ingested.narSha256, name, store.storeDir)
  const info: PathInfo = {
    node: renameNode(ingested.root, Buffer.from(basename(path))),
    references: [],
    narinfo: {
      narSize: ingested.narSize,
      narSha256: ingested.narSha256,
      signatures: [],
      referenceNames: [],
      ca: { type: CaHash.NAR_SHA256, digest: ingested.narSha256 },
    },
  }
  await publishIngested(store, stage, info)
  return { storePath: absolute(path, store.storeDir), narSize: ingested.narSize, narSha256: ingested.narSha256, info }
}

/**
 * Runs an ingest inside a stage of blobs and Directories that is dropped
 * if anything fails (blobs write through where the store cannot stage:
 * then gc removes the orphans),
 * as one write session: what the ingest finds already stored is not swept
 * before its PathInfo is written. `fn` gets the stage and the session's
 * view of `store`, through which it publishes.
 */
export function withStage<S extends Store, T>(store: S, fn: (stage: TreeStage, store: S) => Promise<T>): Promise<T> {
  return inWriteSession(store, async (store) => {
    const stage = stageTree(store)
    try {
      return await fn(stage, store)
    } catch (e) {
      await abortTreeStage(stage)
      throw e
    }
  })
}
