import { InvalidInputError } from '../errors.js'
import { B3_LEN, type B3Digest, b3, compareBytes } from './digest.js'
import type { Directory, Node } from './node.js'
import { encodeDirectory } from './proto.js'

// The type lives beside the nodes so that proto.ts, which encodes it, need not import this file.
export type { Directory } from './node.js'

export const MAX_NAME_LEN = 255
export const MAX_TARGET_LEN = 4095
const SLASH = 0x2f

export function emptyDirectory(): Directory {
  return { directories: [], files: [], symlinks: [] }
}

/** Why `name` is not a valid entry name, or undefined if it is. */
export function invalidNameReason(name: Uint8Array): string | undefined {
  if (name.length === 0) return 'empty name'
  if (name.length > MAX_NAME_LEN) return `name longer than ${MAX_NAME_LEN} bytes`
  if (name.length === 1 && name[0] === 0x2e) return 'name "."'
  if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) return 'name ".."'
  // A loop, not two Buffer.includes (each a call into C++): names are short, and a Directory of a daemon's is checked entry by entry.
  let nul = false
  for (let i = 0; i < name.length; i++) {
    if (name[i] === SLASH) return 'name contains "/"'
    if (name[i] === 0) nul = true
  }
  if (nul) return 'name contains NUL'
  return undefined
}

export function invalidTargetReason(target: Uint8Array): string | undefined {
  if (target.length === 0) return 'empty symlink target'
  if (target.length > MAX_TARGET_LEN) return `symlink target longer than ${MAX_TARGET_LEN} bytes`
  if (target.includes(0)) return 'symlink target contains NUL'
  return undefined
}

export function printableName(name: Uint8Array): string {
  return JSON.stringify(Buffer.from(name).toString('utf8'))
}

/** Throws InvalidInputError unless `dir` obeys every rule of SPEC 2.1. */
export function validateDirectory(dir: Directory): void {
  /** The lists checked so far: sorted, so a name of a later list is looked up in each by bisection (no key string per entry). */
  const earlier: Array<readonly Node[]> = []
  const checkList = (nodes: readonly Node[]) => {
    let prev: Uint8Array | undefined
    for (const node of nodes) {
      const why = invalidNameReason(node.name)
      if (why) throw new InvalidInputError(`invalid directory entry ${printableName(node.name)}: ${why}`)
      if (prev && compareBytes(prev, node.name) >= 0) {
        throw new InvalidInputError(`directory entries not sorted or duplicated at ${printableName(node.name)}`)
      }
      prev = node.name
      for (const list of earlier) if (hasName(list, node.name)) throw new InvalidInputError(`duplicate directory entry ${printableName(node.name)}`)
      if (node.kind === 'symlink') {
        const t = invalidTargetReason(node.target)
        if (t) throw new InvalidInputError(`invalid symlink ${printableName(node.name)}: ${t}`)
      } else if (node.digest.length !== B3_LEN) {
        throw new InvalidInputError(`entry ${printableName(node.name)} has a ${node.digest.length}-byte digest`)
      }
    }
  }
  for (const list of [dir.directories, dir.files, dir.symlinks]) {
    checkList(list)
    if (list.length > 0) earlier.push(list)
  }
  directorySize(dir)
}

/** Whether `nodes`, sorted by name, has one named `name`. */
function hasName(nodes: readonly Node[], name: Uint8Array): boolean {
  let lo = 0
  let hi = nodes.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const c = compareBytes(nodes[mid]!.name, name)
    if (c === 0) return true
    if (c < 0) lo = mid + 1
    else hi = mid
  }
  return false
}

/** Recursive entry count (SPEC 2.2); this is what a DirectoryNode's size must say. */
export function directorySize(dir: Directory): number {
  let size = dir.directories.length + dir.files.length + dir.symlinks.length
  for (const d of dir.directories) size += d.size
  if (!Number.isSafeInteger(size)) throw new InvalidInputError('directory size overflows')
  return size
}

export function directoryDigest(dir: Directory): B3Digest {
  return b3(encodeDirectory(dir))
}

/** All entries merged in name order: the order of a NAR. */
export function entriesInOrder(dir: Directory): Node[] {
  const all: Node[] = [...dir.directories, ...dir.files, ...dir.symlinks]
  return all.sort((a, b) => compareBytes(a.name, b.name))
}

/** Builds a Directory from entries in any order (sorting each list). */
export function directoryFromEntries(entries: Iterable<Node>): Directory {
  const dir = emptyDirectory()
  for (const e of entries) {
    if (e.kind === 'directory') dir.directories.push(e)
    else if (e.kind === 'file') dir.files.push(e)
    else dir.symlinks.push(e)
  }
  const byName = (a: Node, b: Node) => compareBytes(a.name, b.name)
  dir.directories.sort(byName)
  dir.files.sort(byName)
  dir.symlinks.sort(byName)
  return dir
}

export function findEntry(dir: Directory, name: Uint8Array): Node | undefined {
  for (const list of [dir.directories, dir.files, dir.symlinks] as Node[][]) {
    const hit = binarySearch(list, name)
    if (hit) return hit
  }
  return undefined
}

function binarySearch(list: Node[], name: Uint8Array): Node | undefined {
  let lo = 0
  let hi = list.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const c = compareBytes(list[mid]!.name, name)
    if (c === 0) return list[mid]
    if (c < 0) lo = mid + 1
    else hi = mid - 1
  }
  return undefined
}
