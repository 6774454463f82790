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

/** Compact JSON in Nix's key order; an unlisted entry is `{}`. */
export function listingToJson(l: Listing | undefined): string {
  if (!l) return '{}'
  switch (l.type) {
    case 'regular':
      return `{"type":"regular","size":${l.size}${l.executable ? ',"executable":true' : ''}}`
    case 'symlink':
      return `{"type":"symlink","target":${JSON.stringify(l.target)}}`
    case 'directory':
      return `{"type":"directory","entries":{${l.entries.map(([k, v]) => `${JSON.stringify(k)}:${listingToJson(v)}`).join(',')}}}`
  }
}

const MODE = { file: '-r--r--r--', exec: '-r-xr-xr-x', symlink: 'lrwxrwxrwx', directory: 'dr-xr-xr-x' }

/**
 * The lines `nix store ls` prints, as raw bytes (names need not be UTF-8):
 * entries as `./name` below a directory, the basename for anything else;
 * `long` adds mode, size and link target.
 */
export async function* listText(store: Store, arg: string, opts: LsOptions = {}): AsyncGenerator<Buffer> {
  const { node, sub } = await resolvePath(store, arg)
  const children = async (n: Node) => {
    if (n.kind !== 'directory') return []
    const dir = await store.directories.get(n.digest)
    if (!dir) throw new IntegrityError(`directory of '${arg}' is missing from the store`)
    return entriesInOrder(dir)
  }

  async function* show(n: Node, rel: Buffer): AsyncGenerator<Buffer> {
    if (opts.long) {
      const mode = n.kind === 'file' ? (n.executable ? MODE.exec : MODE.file) : MODE[n.kind]
      const size = n.kind === 'file' ? n.size : 0
      const parts = [Buffer.from(`${mode} ${String(size).padStart(20)} `), rel]
      if (n.kind === 'symlink') parts.push(Buffer.from(' -> '), Buffer.from(n.target))
      yield Buffer.concat(parts)
    } else {
      yield rel
    }
    if (opts.recursive && n.kind === 'directory') yield* entries(n, rel)
  }

  async function* entries(n: Node, rel: Buffer): AsyncGenerator<Buffer> {
    for (const child of await children(n)) yield* show(child, Buffer.concat([rel, Buffer.from('/'), child.name]))
  }

  const rootRel = node.kind === 'directory' ? Buffer.from('.') : Buffer.from(sub.at(-1) ?? Buffer.from(node.name).toString())
  if (node.kind === 'directory' && !opts.directory) yield* entries(node, rootRel)
  else yield* show(node, rootRel)
}

/** `nix store ls --json`: one level of entries (each `{}`), or everything with `recursive`. */
export async function listJson(store: Store, arg: string, opts: LsOptions = {}): Promise<Listing> {
  const { node } = await resolvePath(store, arg)
  async function list(n: Node, recurse: boolean): Promise<Listing> {
    switch (n.kind) {
      case 'file':
        return n.executable ? { type: 'regular', size: n.size, executable: true } : { type: 'regular', size: n.size }
      case 'symlink':
        return { type: 'symlink', target: Buffer.from(n.target).toString('utf8') }
      case 'directory': {
        const dir = await store.directories.get(n.digest)
        if (!dir) throw new IntegrityError(`directory of '${arg}' is missing from the store`)
        const entries: Array<[string, Listing | undefined]> = []
        for (const child of entriesInOrder(dir)) {
          entries.push([Buffer.from(child.name).toString('utf8'), recurse ? await list(child, true) : undefined])
        }
        return { type: 'directory', entries }
      }
    }
  }
  return list(node, opts.recursive ?? false)
}
