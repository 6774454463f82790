import { createHash } from 'node:crypto'
import type { BlobService, ImmediateReads } from '../../castore/blob-service.js'
import { type B3Digest, EMPTY_DIGEST, b3Display, bytesEqual } from '../../castore/digest.js'
import { type Directory, entriesInOrder } from '../../castore/directory.js'
import type { DirectoryService } from '../../castore/directory-service.js'
import type { Node } from '../../castore/node.js'
import { IntegrityError, NotFoundError } from '../../errors.js'
import { abortable } from '../../util/abortable.js'
import { cooperate } from '../../util/cooperate.js'
import { NarEncoder } from './encoder.js'

/** What rendering reads; a local store's services also find blobs and Directories without a promise (ImmediateReads, getNow). */
export interface CastoreReader {
  blobs: Pick<BlobService, 'open'> & Partial<ImmediateReads>
  directories: Pick<DirectoryService, 'get'> & { getNow?(digest: B3Digest): Directory | undefined }
}

/**
 * NAR pieces handed on: file contents shorter than COPY_BELOW are copied
 * into pieces of OUT_PIECE bytes, so a tree of small files costs one
 * yield and one write per 256 KiB, not a few per file.
 */
const OUT_PIECE = 256 * 1024
const COPY_BELOW = 64 * 1024

export interface RenderOptions {
  /** Stops the walk (the generator throws the signal's reason) at the next node or chunk. */
  signal?: AbortSignal
  /** Yield the NAR from this byte offset on (an HTTP Range): blobs wholly before it are not even opened. */
  from?: number
  /**
   * The consumer is done with each piece before it asks for the next (a
   * write it waited for): a large local blob is then read into one reused
   * buffer (see readPackedBlob). Every piece made from a blob's chunk is
   * yielded before the blob's next chunk is read.
   */
  lend?: boolean
}

/**
 * Renders the NAR of a castore tree (SPEC 8.3) as a stream of chunks.
 * Directory entries of the three lists are merged in name order; file
 * sizes come from the nodes and must match the blobs exactly.
 *
 * The walk keeps an explicit stack of open Directories, so any depth
 * works, and it lets the event loop turn regularly (see cooperate()).
 */
export async function* renderNar(root: Node, store: CastoreReader, opts: RenderOptions = {}): AsyncGenerator<Uint8Array> {
  const out: Uint8Array[] = []
  const from = opts.from ?? 0
  /** NAR offset of the next byte the encoder hands out. */
  let pos = 0
  const nar = new NarEncoder(
    (c) => {
      const at = pos
      pos += c.length
      if (pos > from) out.push(at >= from ? c : c.subarray(from - at))
    },
    // Lent, the consumer is done with every piece handed out once it asks for more (emit): the encoder fills them again.
    { flushAt: OUT_PIECE, copyBelow: COPY_BELOW, reuse: opts.lend ? 'reclaim' : undefined },
  )
  /** Hands out what the encoder made; when this returns the consumer has asked past the last piece (lent: it is done with them all). */
  function* emit(): Generator<Uint8Array> {
    yield* out.splice(0)
    if (opts.lend) nar.reclaim()
  }
  const checkpoint = cooperate(opts.signal)
  /** Open Directories, innermost last, each with the entries not yet rendered. */
  const open: Array<{ entries: Node[]; next: number }> = []

  nar.begin()
  let node: Node | undefined = root
  for (;;) {
    if (node) {
      if (checkpoint.due()) await checkpoint()
      switch (node.kind) {
        case 'symlink':
          nar.symlink(node.target)
          break
        case 'file': {
          nar.regular(node.executable, node.size)
          if (nar.size + node.size <= from) {
            nar.skipContents(node.size)
            pos += node.size
            nar.endContents(node.size)
            break
          }
          // No bytes, and the digest of no bytes: nothing to read or check (a tree's empty files are one in ten).
          if (node.size === 0 && bytesEqual(node.digest, EMPTY_DIGEST)) {
            nar.endContents(0)
            break
          }
          // A small file of a local store: read and checked in the NAR's own buffer.
          const { readInto } = store.blobs
          const { digest, size } = node
          if (readInto && nar.contentsInPlace(size, (buf, at) => readInto.call(store.blobs, digest, size, buf, at))) {
            nar.endContents(node.size)
            break
          }
          // Without a promise where the store has it at hand (a local store's small blob, a file read ahead); else opened.
          const found = store.blobs.openNow?.(node.digest, node.size, opts.lend) ?? (await store.blobs.open(node.digest, { signal: opts.signal, lend: opts.lend }))
          if (!found) throw new NotFoundError(`blob ${b3Display(node.digest)} is missing from the store`)
          let got = 0
          if (found instanceof Uint8Array) {
            // Read and checked whole already (a small blob of a local store).
            got = found.length
            if (got === node.size) nar.contents(found)
          } else {
            const blob = store.blobs.openNow && opts.signal ? abortable(found, opts.signal) : found
            for await (const chunk of blob) {
              got += chunk.length
              if (got > node.size) break
              nar.contents(chunk)
              if (out.length > 0) yield* emit()
              await checkpoint()
            }
          }
          if (got !== node.size) {
            throw new IntegrityError(`blob ${b3Display(node.digest)} has ${got > node.size ? 'more' : 'fewer'} bytes than the ${node.size} its node claims`)
          }
          nar.endContents(node.size)
          break
        }
        case 'directory': {
          const dir = store.directories.getNow ? store.directories.getNow(node.digest) : await store.directories.get(node.digest, { signal: opts.signal })
          if (!dir) throw new NotFoundError(`directory ${b3Display(node.digest)} is missing from the store`)
          nar.directory()
          open.push({ entries: entriesInOrder(dir), next: 0 })
        }
      }
      node = undefined
      if (out.length > 0) yield* emit()
    }
    const top = open.at(-1)
    if (!top) break
    // Back in a Directory after one of its entries' nodes was rendered: close that entry.
    if (top.next > 0) nar.endEntry()
    if (top.next < top.entries.length) {
      node = top.entries[top.next++]!
      nar.entry(node.name)
    } else {
      nar.endDirectory()
      open.pop()
    }
  }
  nar.flush()
  yield* emit()
}

/** NAR size and SHA-256 of a castore tree, without keeping the NAR. */
export async function calculateNar(root: Node, store: CastoreReader, opts: RenderOptions = {}): Promise<{ narSize: number; narSha256: Uint8Array }> {
  const sha = createHash('sha256')
  let narSize = 0
  // Each piece is hashed before the next is asked for: it may be lent.
  for await (const c of renderNar(root, store, { ...opts, lend: true })) {
    sha.update(c)
    narSize += c.length
  }
  return { narSize, narSha256: sha.digest() }
}
