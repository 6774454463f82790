import type { B3Digest } from '../../castore/digest.js'
import { b3Display, toHex } from '../../castore/digest.js'
import type { Directory } from '../../castore/directory.js'
import type { Node } from '../../castore/node.js'
import { NotFoundError, StoreError } from '../../errors.js'
import { cooperate } from '../../util/cooperate.js'
import { formatSize } from '../../util/size.js'
import { padLen } from './encoder.js'
import { type CastoreReader, calculateNar } from './render.js'

/** A tree whose NAR is larger than a caller allows to render. */
export class NarTooLargeError extends StoreError {
  readonly code = 'ERR_TOO_LARGE'

  constructor(
    readonly narSize: number,
    readonly limit: number,
  ) {
    super(`its NAR would be at least ${formatSize(narSize)}, over the limit of ${formatSize(limit)}`)
  }
}

/** Bytes of one NAR string token: length, bytes, padding. */
const tok = (len: number) => 8 + len + padLen(len)
/** `(` `type` <type> … `)` around every node. */
const NODE = tok(1) + tok(4) + tok(1)
const MAGIC = tok('nix-archive-1'.length)

/** NAR bytes of a node that is not a Directory, straight from the node. */
function leafNarSize(n: Exclude<Node, { kind: 'directory' }>): number {
  if (n.kind === 'symlink') return NODE + tok(7) + tok(6) + tok(n.target.length)
  return NODE + tok(7) + (n.executable ? tok(10) + tok(0) : 0) + tok(8) + 8 + n.size + padLen(n.size)
}

/** `entry ( name <name> node … )` around a child node. */
const entryOverhead = (name: Uint8Array) => tok(5) + tok(1) + tok(4) + tok(name.length) + tok(4) + tok(1)

/**
 * NAR sizes of Directories by digest, shared across calls. A NAR's size is
 * a sum over its parts, so a Directory's size is known from its
 * children's, and a DAG whose Directories share children costs one visit
 * per distinct Directory however large its NAR claims to be. (Its SHA-256
 * is not: a hash of a concatenation cannot be composed from the hashes of
 * the parts, so the hash of a NAR always costs a full render.)
 */
export class NarSizeMemo {
  private readonly sizes = new Map<string, number>()

  constructor(private readonly maxEntries = 100_000) {}

  get(key: string): number | undefined {
    return this.sizes.get(key)
  }

  set(key: string, size: number): void {
    if (this.sizes.size >= this.maxEntries) this.sizes.delete(this.sizes.keys().next().value!)
    this.sizes.set(key, size)
  }
}

export interface NarSizeOptions {
  memo?: NarSizeMemo
  signal?: AbortSignal
  /** Stop (NarTooLargeError) as soon as any part of the tree is known to exceed this. */
  limit?: number
}

/**
 * The size of the NAR of a tree, from Directories and nodes alone (no blob
 * is read): a post-order walk with an explicit stack over each distinct
 * Directory once. Past 2^53 the size is Infinity.
 */
export async function narSize(root: Node, store: Pick<CastoreReader, 'directories'>, opts: NarSizeOptions = {}): Promise<number> {
  const limit = opts.limit ?? Infinity
  const over = (n: number) => {
    if (n > limit) throw new NarTooLargeError(n, limit)
    return n
  }
  if (root.kind !== 'directory') return over(MAGIC + leafNarSize(root))
  const checkpoint = cooperate(opts.signal)
  // This call's results, so that a shared memo evicting entries cannot lose them mid-walk.
  const known = new Map<string, number>()
  const lookup = (key: string) => known.get(key) ?? opts.memo?.get(key)
  const stack: Array<{ digest: B3Digest; key: string; dir?: Directory }> = [{ digest: root.digest, key: toHex(root.digest) }]
  while (stack.length > 0) {
    await checkpoint()
    const top = stack.at(-1)!
    if (lookup(top.key) !== undefined) {
      stack.pop()
      continue
    }
    if (!top.dir) {
      const dir = await store.directories.get(top.digest, { signal: opts.signal })
      if (!dir) throw new NotFoundError(`directory ${b3Display(top.digest)} is missing from the store`)
      top.dir = dir
      // Children first; a child pushed twice is found known the second time.
      for (const c of dir.directories) {
        const key = toHex(c.digest)
        if (lookup(key) === undefined) stack.push({ digest: c.digest, key })
      }
      continue
    }
    let size = NODE + tok(9)
    for (const c of top.dir.directories) size += entryOverhead(c.name) + lookup(toHex(c.digest))!
    for (const c of top.dir.files) size += entryOverhead(c.name) + leafNarSize(c)
    for (const c of top.dir.symlinks) size += entryOverhead(c.name) + leafNarSize(c)
    if (size > Number.MAX_SAFE_INTEGER) size = Infinity
    over(MAGIC + size)
    known.set(top.key, size)
    opts.memo?.set(top.key, size)
    stack.pop()
  }
  return over(MAGIC + lookup(toHex(root.digest))!)
}

export interface NarTotalsOptions {
  /** Refuse (NarTooLargeError) a tree whose NAR is larger than this, before rendering any of it. */
  maxNarSize: number
  signal?: AbortSignal
  memo?: NarSizeMemo
}

/**
 * NAR size and SHA-256 of a tree, bounded: the size is computed first and
 * cheaply (see narSize), and only a tree within `maxNarSize` is rendered
 * to hash it. The render yields to the event loop and stops when `signal`
 * is aborted. This is the one entry point for hashing trees that came
 * from someone else (a daemon's clients, a PathInfo to admit or verify):
 * a few small Directories can claim terabytes.
 */
export async function checkedNarTotals(root: Node, store: CastoreReader, opts: NarTotalsOptions): Promise<{ narSize: number; narSha256: Uint8Array }> {
  await narSize(root, store, { memo: opts.memo, signal: opts.signal, limit: opts.maxNarSize })
  return calculateNar(root, store, { signal: opts.signal })
}

/**
 * The default for `maxNarSize` in the daemon and in `verify --nar-hash`:
 * 64 GiB. Real store paths stay far below it (the largest in nixpkgs,
 * toolkits and texlive bundles, are a few GiB), while hashing 64 GiB is
 * about a minute of one core: a bound on what one call can cost, where a
 * few hundred GiB would be an hour. A bomb claiming terabytes is refused
 * after reading its few Directories.
 */
export const DEFAULT_MAX_NAR_SIZE = 64 * 2 ** 30
