import { createHash } from 'node:crypto'
import { type BlobInfo, putReused } from '../../castore/blob-service.js'
import { b3 } from '../../castore/digest.js'
import { lentSource } from '../../castore/reusable-source.js'
import type { Node } from '../../castore/node.js'
import { DirectoryEncoder } from '../../castore/proto.js'
import { stageDirectory, type TreeStage } from '../../castore/tree-stage.js'
import type { IngestOptions, IngestResult } from '../ingest-fs.js'
import { ByteReader } from './byte-reader.js'
import { readNar } from './reader.js'

const EMPTY = new Uint8Array(0)
/**
 * Files up to this size go to the stage as one buffer: a small file is
 * usually one piece of the input already, and a stage takes a buffer in
 * one step (the local store hashes and writes it with one call each), where
 * a stream costs several async hops per file, the bulk of a tree of small
 * files. The local store holds that much of a stream anyway to pick a format.
 */
const WHOLE_FILE = 1 << 20

/**
 * Ingests a NAR stream into the castore (SPEC 8.4): files become blobs as
 * they stream past, Directories are staged leaves first as each ends. The raw input
 * is hashed as it is read; the strict reader guarantees it was canonical,
 * so its hash is the NAR hash of the tree.
 */
export interface NarIngestOptions extends IngestOptions {
  /** `src` reuses its buffers (each piece valid only until the next is asked for): what the stage may keep is copied first. */
  reusedBuffers?: boolean
}

export async function ingestNar(src: AsyncIterable<Uint8Array>, tree: TreeStage, opts: NarIngestOptions = {}): Promise<IngestResult> {
  const { observe, reusedBuffers, ...callOpts } = opts
  const reused = reusedBuffers === true
  const sha = createHash('sha256')
  let narSize = 0
  const reader = new ByteReader(src, (c) => {
    sha.update(c)
    narSize += c.length
  })
  try {
    const root = await readNar<Node>(reader, {
      async file(executable, size, contents) {
        const info = size <= WHOLE_FILE ? await putSmall(await wholeFile(contents, size, reused), reused) : await tree.blobs.put(reused ? lentSource(contents, size) : contents, callOpts)
        observe?.file(info.digest, size)
        return { kind: 'file', name: EMPTY, digest: info.digest, size, executable }
      },
      async symlink(target) {
        opts.signal?.throwIfAborted()
        return { kind: 'symlink', name: EMPTY, target }
      },
      async directory(entries) {
        opts.signal?.throwIfAborted()
        // In name order: the strict reader refuses any other.
        const dir = new DirectoryEncoder()
        for (const e of entries) dir.add({ ...e.node, name: e.name })
        return stageDirectory(tree.directories, dir, observe)
      },
    })
    return { root, narSize, narSha256: sha.digest() }
  } finally {
    await reader.cancel()
  }

  /**
   * A small file, hashed here (microseconds) so that a stage that can take
   * it at once (BlobStage.putNow: the local store's bundle, or a blob it
   * has) does so without the promises of a put, most of what a NAR of many
   * small files costs; the stage copies what it keeps. Else a put, told the
   * digest so it does not hash again, of a copy where the reader reuses its
   * buffer (`data` is a view of it while it came whole).
   */
  function putSmall(data: Uint8Array, reused: boolean): BlobInfo | Promise<BlobInfo> {
    const digest = b3(data)
    return tree.blobs.putNow?.(data, digest) ?? (reused ? putReused(tree.blobs, data, { ...callOpts, digest }) : tree.blobs.put(data, { ...callOpts, digest }))
  }
}

/**
 * A small file's `size` bytes as one buffer: the piece itself when it came
 * whole (the common case; where the source reuses its buffer, a view valid
 * until the next piece is asked for), else the pieces joined (each copied
 * as it comes where the source reuses its buffer).
 */
async function wholeFile(contents: AsyncIterable<Uint8Array>, size: number, reused: boolean): Promise<Uint8Array> {
  const pieces: Uint8Array[] = []
  for await (const p of contents) pieces.push(reused && p.length !== size ? Buffer.from(p) : p)
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces)
}
