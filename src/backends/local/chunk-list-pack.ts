import { type ChunkMeta, verifyChunks } from '../../castore/blob-service.js'
import type { ChunkFetch } from '../../castore/chunk-transfer.js'
import { type B3Digest, b3Display, b3Hasher, bytesEqual } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import type { ChunkIndex } from './chunk-index.js'
import type { ChunkReader, PackWriter } from './pack.js'

/**
 * Fills `pack` with blob `blob` as its chunk list gives it, without cutting
 * it into chunks again. A chunk the store already holds in a pack (`index`)
 * is not fetched: it is referenced, and read back (checked, through
 * `reader`) only for the whole-blob hash. The others come from `fetch`,
 * each checked against its digest before it is added. Returns the blob's
 * size once the BLAKE3 of all of it equals `blob`; throws otherwise, and
 * the caller discards the pack (nothing of it was published).
 */
export async function fillPackFromChunks(pack: PackWriter, index: ChunkIndex, reader: ChunkReader, blob: B3Digest, chunks: ChunkMeta[], fetch: ChunkFetch): Promise<number> {
  const held = chunks.map((c) => index.get(c.digest))
  const wanted = chunks.filter((_, i) => !held[i])
  // verifyChunks passes on runs of whole chunks, each checked: a run is cut back into its chunks below, each
  // copied into the pack (pack.add) before the next run is asked for, so the fetch's and verifyChunks' buffers may be reused.
  const arriving = verifyChunks(blob, wanted, fetch(wanted), true)
  const h = b3Hasher()
  let size = 0
  let run: Uint8Array = new Uint8Array(0)
  let at = 0
  try {
    for (const [i, c] of chunks.entries()) {
      let bytes: Uint8Array
      const ref = held[i]
      if (ref) bytes = reader.read(ref)
      else {
        if (at === run.length) {
          const r = await arriving.next()
          if (r.done) throw new IntegrityError(`blob ${b3Display(blob)} is corrupt: it has fewer bytes than its chunks`)
          run = r.value
          at = 0
        }
        bytes = run.subarray(at, at + c.size)
        at += c.size
      }
      h.update(bytes)
      size += bytes.length
      await pack.add(bytes, index, c.digest)
    }
    // Reading on to the end lets verifyChunks refuse bytes beyond the last chunk.
    if (!(await arriving.next()).done) throw new IntegrityError(`blob ${b3Display(blob)} is corrupt: it has more bytes than its chunks`)
  } finally {
    await arriving.return(undefined)
  }
  if (!bytesEqual(h.digest(), blob)) throw new IntegrityError(`blob ${b3Display(blob)} is corrupt: its chunks do not make up its digest`)
  return size
}
