import { entriesInOrder } from '../castore/directory.js'
import type { Node } from '../castore/node.js'
import { IntegrityError } from '../errors.js'
import type { Store } from '../store/store.js'
import { resolvePath } from './resolve.js'

export interface LsOptions {
  long?: boolean
  recursive?: boolean
  /** List a directory itself rather than its entries. */
  directory?: boolean
}

/**
 * Nix's listing shape (`nix store ls --json`, `.ls` files). Directory
 * entries are kept as a list in byte order: a JS object would move
 * integer-like names ("2", "10") to the front.
 */
export type Listing =
  | { type: 'regular'; size: number; executable?: true }
  | { type: 'symlink'; target: string }
  | { type: 'directory'; entries: Array<[string, Listing | undefined]> }

/** Compact JSON in Nix's key order; an unlisted entry is `{}`. Built with an explicit stack: any depth works. */
export function listingToJson(l: Listing | undefined): string {
  const parts: string[] = []
  // Listings still to write, and literal text between them, last first.
  const todo: Array<{ text: string } | { listing: Listing | undefined }> = [{ listing: l }]
  while (todo.length > 0) {
    const item = todo.pop()!
    if ('text' in item) {
      parts.push(item.text)
      continue
    }
    const x = item.listing
    if (!x) parts.push('{}')
    else if (x.type === 'regular') parts.push(`{"type":"regular","size":${x.size}${x.executable ? ',"executable":true' : ''}}`)
    else if (x.type === 'symlink') parts.push(`{"type":"symlink","target":${JSON.stringify(x.target)}}`)
    else {
      parts.push('{"type":"directory","entries":{')
      todo.push({ text: '}}' })
      for (let i = x.entries.length - 1; i >= 0; i--) {
        const [name, child] = x.entries[i]!
        todo.push({ listing: child }, { text: `${i > 0 ? ',' : ''}${JSON.stringify(name)}:` })
      }
    }
  }
  return parts.join('')
}

const MODE = { file: '-r--r--r--', exec: '-r-xr-xr-x', symlink: 'lrwxrwxrwx', directory: 'dr-xr-xr-x' }

/**
 * The lines `nix store ls` prints, as raw bytes (names need not be UTF-8):
 * entries as `./name` below a directory, the basename for anything else;
 * `long` adds mode, size and link target.
 */
export async function* listText(store: Store, arg: string, opts: LsOptions = {}): AsyncGenerator<Buffer> {
  const { node, sub } = await resolvePath(store, arg)
  const line = (n: Node, rel: Buffer): Buffer => {
    if (!opts.long) return rel
    const mode = n.kind === 'file' ? (n.executable ? MODE.exec : MODE.file) : MODE[n.kind]
    const size = n.kind === 'file' ? n.size : 0
    const parts = [Buffer.from(`${mode} ${String(size).padStart(20)} `), rel]
    if (n.kind === 'symlink') parts.push(Buffer.from(' -> '), Buffer.from(n.target))
    return Buffer.concat(parts)
  }
  // Directories being listed, innermost last: an explicit stack, so any depth works.
  const open: Array<{ entries: Node[]; next: number; rel: Buffer }> = []
  const descend = async (n: Node, rel: Buffer) => {
    open.push({ entries: await childrenOf(store, arg, n), next: 0, rel })
  }

  const rootRel = node.kind === 'directory' ? Buffer.from('.') : Buffer.from(sub.at(-1) ?? Buffer.from(node.name).toString())
  if (node.kind === 'directory' && !opts.directory) {
    await descend(node, rootRel)
  } else {
    yield line(node, rootRel)
    if (opts.recursive && node.kind === 'directory') await descend(node, rootRel)
  }
  while (open.length > 0) {
    const top = open.at(-1)!
    if (top.next === top.entries.length) {
      open.pop()
      continue
    }
    const child = top.entries[top.next++]!
    const rel = Buffer.concat([top.rel, SLASH, child.name])
    yield line(child, rel)
    if (opts.recursive && child.kind === 'directory') await descend(child, rel)
  }
}

const SLASH = Buffer.from('/')

/** A directory node's entries in name order; none for anything else. */
async function childrenOf(store: Store, arg: string, n: Node): Promise<Node[]> {
  if (n.kind !== 'directory') return []
  const dir = await store.directories.get(n.digest)
  if (!dir) throw new IntegrityError(`directory of '${arg}' is missing from the store`)
  return entriesInOrder(dir)
}

/** `nix store ls --json`: one level of entries (each `{}`), or everything with `recursive`. */
export async function listJson(store: Store, arg: string, opts: LsOptions = {}): Promise<Listing> {
  const { node } = await resolvePath(store, arg)
  const leaf = (n: Node): Listing | undefined => {
    if (n.kind === 'file') return n.executable ? { type: 'regular', size: n.size, executable: true } : { type: 'regular', size: n.size }
    if (n.kind === 'symlink') return { type: 'symlink', target: Buffer.from(n.target).toString('utf8') }
    return undefined
  }
  const root = leaf(node)
  if (root) return root
  const listing: Listing = { type: 'directory', entries: [] }
  // Directories being filled in, innermost last.
  const open = [{ listing, entries: await childrenOf(store, arg, node), next: 0 }]
  while (open.length > 0) {
    const top = open.at(-1)!
    if (top.next === top.entries.length) {
      open.pop()
      continue
    }
    const child = top.entries[top.next++]!
    const name = Buffer.from(child.name).toString('utf8')
    if (!opts.recursive) {
      top.listing.entries.push([name, undefined])
      continue
    }
    const sub = leaf(child) ?? { type: 'directory', entries: [] }
    top.listing.entries.push([name, sub])
    if (sub.type === 'directory') open.push({ listing: sub, entries: await childrenOf(store, arg, child), next: 0 })
  }
  return listing
}
