import { b3Display } from '../../castore/digest.js'
import { entriesInOrder } from '../../castore/directory.js'
import type { Node } from '../../castore/node.js'
import { NotFoundError } from '../../errors.js'
import { NarEncoder } from './encoder.js'
import type { CastoreReader } from './render.js'
import { cooperate } from '../../util/cooperate.js'

/** Text is handed out in pieces of about this size: a listing of a huge tree is never one string. */
const PIECE = 64 * 1024

const name = (bytes: Uint8Array) => JSON.stringify(Buffer.from(bytes).toString('utf8'))

/**
 * The NAR listing Nix writes beside a NAR with `?write-nar-listing=true`
 * (`<hash>.ls`): `{"version":1,"root":{…}}`, each node with its `type`,
 * regular files with `size`, `executable` when set and `narOffset` (where
 * their contents start in the NAR), symlinks with `target`, directories
 * with `entries` in NAR order. Keys in the order Nix writes them.
 *
 * Made from Directories and nodes alone, no blob is read: the offsets come
 * from the NAR encoder counting its framing while the contents are skipped,
 * so they are the ones renderNar's bytes have.
 */
export async function* narListing(root: Node, store: Pick<CastoreReader, 'directories'>, signal?: AbortSignal): AsyncGenerator<string> {
  // Nothing keeps the pieces: the encoder fills one buffer over and over.
  const nar = new NarEncoder(() => {}, { reuse: 'sink' })
  const checkpoint = cooperate(signal)
  /** Directories being listed, innermost last, with the entries not yet listed. */
  const stack: Array<{ entries: Node[]; next: number }> = []
  let text = '{"version":1,"root":'
  nar.begin()
  for (let node: Node | undefined = root; ; ) {
    if (node) {
      await checkpoint()
      if (node.kind === 'symlink') {
        nar.symlink(node.target)
        text += `{"type":"symlink","target":${name(node.target)}}`
      } else if (node.kind === 'file') {
        nar.regular(node.executable, node.size)
        text += `{"type":"regular","size":${node.size}${node.executable ? ',"executable":true' : ''},"narOffset":${nar.size}}`
        nar.skipContents(node.size)
        nar.endContents(node.size)
      } else {
        const dir = await store.directories.get(node.digest, { signal })
        if (!dir) throw new NotFoundError(`directory ${b3Display(node.digest)} is missing from the store`)
        nar.directory()
        text += '{"type":"directory","entries":{'
        stack.push({ entries: entriesInOrder(dir), next: 0 })
      }
      if (text.length >= PIECE) {
        yield text
        text = ''
      }
    }
    const dir = stack.at(-1)
    if (!dir) break
    if (dir.next > 0) nar.endEntry()
    node = dir.entries[dir.next]
    if (node) {
      text += `${dir.next > 0 ? ',' : ''}${name(node.name)}:`
      dir.next++
      nar.entry(node.name)
    } else {
      nar.endDirectory()
      text += '}}'
      stack.pop()
    }
  }
  yield `${text}}`
}
