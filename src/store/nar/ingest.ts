import { createHash } from 'node:crypto'
import type { BlobStage } from '../../castore/blob-service.js'
import type { CallOptions } from '../../util/call-options.js'
import { type Directory, directoryDigest, directoryFromEntries, directorySize } from '../../castore/directory.js'
import type { Node } from '../../castore/node.js'
import type { IngestResult } from '../ingest-fs.js'
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
 * they stream past, Directories are collected leaves first. The raw input
 * is hashed as it is read; the strict reader guarantees it was canonical,
 * so its hash is the NAR hash of the tree.
 */
export async function ingestNar(src: AsyncIterable<Uint8Array>, stage: BlobStage, opts: CallOptions = {}): Promise<IngestResult> {
  const sha = createHash('sha256')
  let narSize = 0
  const reader = new ByteReader(src, (c) => {
    sha.update(c)
    narSize += c.length
  })
  const directories: Directory[] = []
  try {
    const root = await readNar<Node>(reader, {
      async file(executable, size, contents) {
        const info = await stage.put(size <= WHOLE_FILE ? await wholeFile(contents) : contents, opts)
        return { kind: 'file', name: EMPTY, digest: info.digest, size, executable }
      },
      async symlink(target) {
        opts.signal?.throwIfAborted()
        return { kind: 'symlink', name: EMPTY, target }
      },
      async directory(entries) {
        opts.signal?.throwIfAborted()
        const dir = directoryFromEntries(entries.map((e) => ({ ...e.node, name: e.name })))
        directories.push(dir)
        return { kind: 'directory', name: EMPTY, digest: directoryDigest(dir), size: directorySize(dir) }
      },
    })
    return { root, directories, narSize, narSha256: sha.digest() }
  } finally {
    await reader.cancel()
  }
}

/** A small file's contents as one buffer: the piece itself when it came whole (the common case), else the pieces joined. */
async function wholeFile(contents: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const pieces: Uint8Array[] = []
  for await (const p of contents) pieces.push(p)
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces)
}
