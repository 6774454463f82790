import { type ImmediateReads, iterateSource } from '../castore/blob-service.js'
import { IntegrityError, InvalidInputError } from '../errors.js'
import type { Store } from '../store/store.js'
import { resolvePath } from './resolve.js'

/**
 * The bytes of a regular file inside the store; like `nix store cat`.
 * `lend`: the caller is done with each piece before it asks for the next
 * (ImmediateReads.openNow, OpenOptions), so a local store may reuse one
 * read buffer, a daemon's client its message buffers.
 */
export async function catFile(store: Store, arg: string, opts: { lend?: boolean } = {}): Promise<AsyncIterable<Uint8Array>> {
  const { node, display } = await resolvePath(store, arg)
  if (node.kind !== 'file') throw new InvalidInputError(`path '${display}' is not a regular file`)
  const { openNow } = store.blobs as Partial<ImmediateReads>
  const found = opts.lend && openNow ? openNow.call(store.blobs, node.digest, node.size, true) : undefined
  const blob = found instanceof Uint8Array ? iterateSource(found) : (found ?? (await store.blobs.open(node.digest, { lend: opts.lend })))
  if (!blob) throw new IntegrityError(`the contents of '${display}' are missing from the store`)
  return checkedSize(blob, node.size, display)
}

async function* checkedSize(blob: AsyncIterable<Uint8Array>, size: number, display: string): AsyncGenerator<Uint8Array> {
  let got = 0
  for await (const c of blob) {
    got += c.length
    yield c
  }
  if (got !== size) throw new IntegrityError(`the contents of '${display}' have ${got} bytes, want ${size}`)
}
