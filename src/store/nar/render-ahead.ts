import { type BlobService, readsLocally } from '../../castore/blob-service.js'
import { readAhead, type TreeSource } from '../../castore/read-ahead.js'
import type { Node } from '../../castore/node.js'
import { type RenderOptions, renderNar } from './render.js'

/**
 * renderNar for a store that may be remote: there the Directories come in
 * one recursive Get and the next files are fetched while one streams
 * (readAhead), instead of a round trip per node. Same bytes, same errors
 * at the same place; a local store is rendered as it is.
 */
export async function* renderNarAhead(root: Node, store: TreeSource, opts: Omit<RenderOptions, 'from'> = {}): AsyncGenerator<Uint8Array> {
  if (readsLocally(store.blobs as BlobService)) return yield* renderNar(root, store, opts)
  const ahead = readAhead(store, root, opts.signal)
  try {
    yield* renderNar(root, ahead.reader, opts)
  } finally {
    ahead.stop()
  }
}
