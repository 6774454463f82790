import { createHash } from 'node:crypto'
import type { BlobService } from '../../castore/blob-service.js'
import { b3Display } from '../../castore/digest.js'
import { entriesInOrder } from '../../castore/directory.js'
import type { DirectoryService } from '../../castore/directory-service.js'
import type { Node } from '../../castore/node.js'
import { IntegrityError, NotFoundError } from '../../errors.js'
import { NarEncoder } from './encoder.js'

export interface CastoreReader {
  blobs: Pick<BlobService, 'open'>
  directories: Pick<DirectoryService, 'get'>
}

/**
 * Renders the NAR of a castore tree (SPEC 8.3) as a stream of chunks.
 * Directory entries of the three lists are merged in name order; file
 * sizes come from the nodes and must match the blobs exactly.
 */
export async function* renderNar(root: Node, store: CastoreReader): AsyncGenerator<Uint8Array> {
  const out: Uint8Array[] = []
  const nar = new NarEncoder((c) => out.push(c))

  async function* node(n: Node): AsyncGenerator<Uint8Array> {
    switch (n.kind) {
      case 'symlink':
        nar.symlink(n.target)
        return
      case 'file': {
        const blob = await store.blobs.open(n.digest)
        if (!blob) throw new NotFoundError(`blob ${b3Display(n.digest)} is missing from the store`)
        nar.regular(n.executable, n.size)
        let got = 0
        for await (const chunk of blob) {
          got += chunk.length
          if (got > n.size) break
          nar.contents(chunk)
          if (out.length > 0) yield* out.splice(0)
        }
        if (got !== n.size) {
          throw new IntegrityError(`blob ${b3Display(n.digest)} has ${got > n.size ? 'more' : 'fewer'} bytes than the ${n.size} its node claims`)
        }
        nar.endContents(n.size)
        return
      }
      case 'directory': {
        const dir = await store.directories.get(n.digest)
        if (!dir) throw new NotFoundError(`directory ${b3Display(n.digest)} is missing from the store`)
        nar.directory()
        for (const child of entriesInOrder(dir)) {
          nar.entry(child.name)
          yield* node(child)
          nar.endEntry()
          if (out.length > 0) yield* out.splice(0)
        }
        nar.endDirectory()
      }
    }
  }

  nar.begin()
  yield* node(root)
  nar.flush()
  yield* out.splice(0)
}

/** NAR size and SHA-256 of a castore tree, without keeping the NAR. */
export async function calculateNar(root: Node, store: CastoreReader): Promise<{ narSize: number; narSha256: Uint8Array }> {
  const sha = createHash('sha256')
  let narSize = 0
  for await (const c of renderNar(root, store)) {
    sha.update(c)
    narSize += c.length
  }
  return { narSize, narSha256: sha.digest() }
}
