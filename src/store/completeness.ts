import type { BlobService } from '../castore/blob-service.js'
import { b3Display } from '../castore/digest.js'
import type { DirectoryService } from '../castore/directory-service.js'
import type { Node } from '../castore/node.js'
import { forEachLimit } from '../util/pool.js'

const PARALLEL_CHECKS = 32

/**
 * What is missing for `node` to be served: the first absent Directory or
 * blob below it, described, or undefined when the tree is complete. A
 * Directory is only ever stored after its children, so one present means
 * its Directory closure is; blobs are checked one by one.
 */
export async function findMissing(node: Node, store: { blobs: Pick<BlobService, 'has'>; directories: DirectoryService }): Promise<string | undefined> {
  if (node.kind === 'symlink') return undefined
  if (node.kind === 'file') return (await store.blobs.has(node.digest)) ? undefined : `blob ${b3Display(node.digest)}`
  const files = new Map<string, Uint8Array>()
  let seen = 0
  try {
    for await (const dir of store.directories.getClosure(node.digest)) {
      seen++
      for (const f of dir.files) files.set(Buffer.from(f.digest).toString('hex'), f.digest)
    }
  } catch (e) {
    return (e as Error).message
  }
  if (seen === 0) return `directory ${b3Display(node.digest)}`
  let missing: string | undefined
  await forEachLimit(files.values(), PARALLEL_CHECKS, async (d) => {
    if (!missing && !(await store.blobs.has(d))) missing = `blob ${b3Display(d)}`
  })
  return missing
}
