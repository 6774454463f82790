import { findEntry } from '../castore/directory.js'
import type { Node } from '../castore/node.js'
import { IntegrityError, NotFoundError } from '../errors.js'
import type { PathInfo } from '../store/path-info.js'
import { type StorePath, absolute, basename, parseStorePathArg } from '../store/store-path.js'
import type { Store } from '../store/store.js'

export interface Resolved {
  storePath: StorePath
  /** The absolute path as the user meant it, for messages. */
  display: string
  info: PathInfo
  /** The node at the sub-path (the root node for none). */
  node: Node
  sub: string[]
}

/** Looks up a PathInfo by store path; NotFoundError if the store lacks it. */
export async function getPathInfo(store: Store, arg: string): Promise<{ storePath: StorePath; info: PathInfo }> {
  const { path } = parseStorePathArg(arg, store.storeDir)
  const info = await store.pathInfos.get(path.digest)
  // The PathInfo is keyed by the hash part; the name must match too.
  if (!info || Buffer.from(info.node.name).toString('utf8') !== basename(path)) {
    throw new NotFoundError(`path '${absolute(path, store.storeDir)}' is not valid`)
  }
  return { storePath: path, info }
}

/**
 * Resolves `<store path>[/sub/path]` to a node. Like Nix's store
 * accessor, symlinks inside the path are not followed, and `..` is never
 * resolved upwards (it names no entry). Otherwise components resolve as in a
 * filesystem (as `nix store cat/ls` on a local store see them): `//` and `.`
 * stay where they are, and nothing may follow a file or symlink, not even a
 * trailing `/`.
 */
export async function resolvePath(store: Store, arg: string): Promise<Resolved> {
  const { storePath, info } = await getPathInfo(store, arg)
  const base = basename(storePath)
  // The components as written: parseStorePathArg drops the empty ones and `.`, which matter after a file.
  const written = arg.slice(arg.indexOf(base) + base.length).split('/').slice(1)
  // Messages show the path as the user wrote it, as Nix's do.
  const display = absolute(storePath, store.storeDir) + written.map((c) => `/${c}`).join('')
  const missing = () => new NotFoundError(`path '${display}' does not exist`)
  const sub: string[] = []
  let node: Node = info.node
  for (const component of written) {
    if (node.kind !== 'directory') throw missing()
    if (component === '' || component === '.') continue
    const dir = await store.directories.get(node.digest)
    if (!dir) throw new IntegrityError(`directory of '${display}' is missing from the store`)
    const next = findEntry(dir, Buffer.from(component))
    if (!next) throw missing()
    sub.push(component)
    node = next
  }
  return { storePath, display, info, node, sub }
}
