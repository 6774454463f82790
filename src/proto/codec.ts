/**
 * Conversions between the domain types and the generated protobuf
 * messages, plus their binary encodings. @bufbuild/protobuf follows proto3
 * implicit presence (default values are never written), which makes its
 * output byte-identical to prost's: Directory digests depend on that.
 */
import { type Message, create, fromBinary, toBinary } from '@bufbuild/protobuf'
import type { GenMessage } from '@bufbuild/protobuf/codegenv2'
import type { Directory } from '../castore/directory.js'
import type { DirectoryNode, FileNode, Node, SymlinkNode } from '../castore/node.js'
import { InvalidInputError } from '../errors.js'
import type { PathInfo } from '../store/path-info.js'
import * as pb from './gen/tvix/castore/protos/castore_pb.js'
import * as spb from './gen/tvix/store/protos/pathinfo_pb.js'

function num(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new InvalidInputError(`${what} ${v} is too large`)
  return Number(v)
}

const dirNodeMsg = (n: DirectoryNode) => create(pb.DirectoryNodeSchema, { name: n.name, digest: n.digest, size: BigInt(n.size) })
const fileNodeMsg = (n: FileNode) =>
  create(pb.FileNodeSchema, { name: n.name, digest: n.digest, size: BigInt(n.size), executable: n.executable })
const symlinkNodeMsg = (n: SymlinkNode) => create(pb.SymlinkNodeSchema, { name: n.name, target: n.target })

const dirNodeFrom = (m: pb.DirectoryNode): DirectoryNode => ({
  kind: 'directory',
  name: m.name,
  digest: m.digest,
  size: num(m.size, 'directory size'),
})
const fileNodeFrom = (m: pb.FileNode): FileNode => ({
  kind: 'file',
  name: m.name,
  digest: m.digest,
  size: num(m.size, 'file size'),
  executable: m.executable,
})
const symlinkNodeFrom = (m: pb.SymlinkNode): SymlinkNode => ({ kind: 'symlink', name: m.name, target: m.target })

export function directoryToMsg(d: Directory): pb.Directory {
  return create(pb.DirectorySchema, {
    directories: d.directories.map(dirNodeMsg),
    files: d.files.map(fileNodeMsg),
    symlinks: d.symlinks.map(symlinkNodeMsg),
  })
}

export function directoryFromMsg(m: pb.Directory): Directory {
  return {
    directories: m.directories.map(dirNodeFrom),
    files: m.files.map(fileNodeFrom),
    symlinks: m.symlinks.map(symlinkNodeFrom),
  }
}

/** The canonical bytes whose BLAKE3 is the Directory's identity. */
export function encodeDirectory(d: Directory): Uint8Array {
  return toBinary(pb.DirectorySchema, directoryToMsg(d))
}

export function decodeDirectory(bytes: Uint8Array): Directory {
  return directoryFromMsg(decode(pb.DirectorySchema, bytes, 'Directory'))
}

export function nodeToMsg(n: Node): pb.Node {
  switch (n.kind) {
    case 'directory':
      return create(pb.NodeSchema, { node: { case: 'directory', value: dirNodeMsg(n) } })
    case 'file':
      return create(pb.NodeSchema, { node: { case: 'file', value: fileNodeMsg(n) } })
    case 'symlink':
      return create(pb.NodeSchema, { node: { case: 'symlink', value: symlinkNodeMsg(n) } })
  }
}

export function nodeFromMsg(m: pb.Node | undefined): Node {
  switch (m?.node.case) {
    case 'directory':
      return dirNodeFrom(m.node.value)
    case 'file':
      return fileNodeFrom(m.node.value)
    case 'symlink':
      return symlinkNodeFrom(m.node.value)
    default:
      throw new InvalidInputError('node is not set')
  }
}

export function encodeNode(n: Node): Uint8Array {
  return toBinary(pb.NodeSchema, nodeToMsg(n))
}

export function pathInfoToMsg(p: PathInfo): spb.PathInfo {
  const ni = p.narinfo
  return create(spb.PathInfoSchema, {
    node: nodeToMsg(p.node),
    references: p.references,
    narinfo: ni && {
      narSize: BigInt(ni.narSize),
      narSha256: ni.narSha256,
      signatures: ni.signatures.map((s) => ({ name: s.name, data: s.data })),
      referenceNames: ni.referenceNames,
      deriver: ni.deriver && { name: ni.deriver.name, digest: ni.deriver.digest },
      ca: ni.ca && { type: ni.ca.type as number as spb.NARInfo_CA_Hash, digest: ni.ca.digest },
    },
  })
}

export function pathInfoFromMsg(m: spb.PathInfo): PathInfo {
  const ni = m.narinfo
  return {
    node: nodeFromMsg(m.node),
    references: m.references,
    narinfo: ni && {
      narSize: num(ni.narSize, 'nar_size'),
      narSha256: ni.narSha256,
      signatures: ni.signatures.map((s) => ({ name: s.name, data: s.data })),
      referenceNames: ni.referenceNames,
      deriver: ni.deriver && { name: ni.deriver.name, digest: ni.deriver.digest },
      ca: ni.ca && { type: ni.ca.type as number, digest: ni.ca.digest },
    },
  }
}

export function encodePathInfo(p: PathInfo): Uint8Array {
  return toBinary(spb.PathInfoSchema, pathInfoToMsg(p))
}

export function decodePathInfo(bytes: Uint8Array): PathInfo {
  return pathInfoFromMsg(decode(spb.PathInfoSchema, bytes, 'PathInfo'))
}

function decode<T extends Message>(schema: GenMessage<T>, bytes: Uint8Array, what: string): T {
  try {
    return fromBinary(schema, bytes)
  } catch (e) {
    throw new InvalidInputError(`malformed ${what} message: ${(e as Error).message}`, { cause: e })
  }
}
