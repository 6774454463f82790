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
        const info = await stage.put(contents, opts)
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
