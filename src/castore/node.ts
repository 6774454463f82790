import type { B3Digest } from './digest.js'

/**
 * The three kinds of castore node. `name` is raw bytes (any bytes but `/`
 * and NUL); it is empty for an anonymous root and the store path basename
 * for the root node of a PathInfo.
 */
export interface DirectoryNode {
  kind: 'directory'
  name: Uint8Array
  digest: B3Digest
  /** Recursive entry count of the Directory it points to (SPEC 2.2). */
  size: number
}

export interface FileNode {
  kind: 'file'
  name: Uint8Array
  digest: B3Digest
  size: number
  executable: boolean
}

export interface SymlinkNode {
  kind: 'symlink'
  name: Uint8Array
  target: Uint8Array
}

export type Node = DirectoryNode | FileNode | SymlinkNode

/** A Merkle directory: three name-sorted lists, names unique across them (rules in directory.ts). */
export interface Directory {
  directories: DirectoryNode[]
  files: FileNode[]
  symlinks: SymlinkNode[]
}

export function renameNode<N extends Node>(node: N, name: Uint8Array): N {
  return { ...node, name }
}
