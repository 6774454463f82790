/**
 * Binary encodings of castore's Directory and Node, field for field as in
 * protos/tvix/castore. Hand-written on purpose: the messages are few and
 * small, the canonical form must be exact (a Directory's digest is the
 * BLAKE3 of these bytes), and loading @bufbuild/protobuf's runtime costs
 * 30-60 ms of CLI start-up. test/proto/codec.test.ts checks every message
 * against the generated @bufbuild/protobuf code, which stays the reference.
 */
import { InvalidInputError } from '../errors.js'
import { Writer, asBytes, asUint, described, encode, fields, readMerged } from '../proto/wire.js'
import type { Directory, DirectoryNode, FileNode, Node, SymlinkNode } from './node.js'

const EMPTY: Uint8Array = new Uint8Array(0)

// --- castore nodes ---------------------------------------------------------

function writeDirNode(w: Writer, n: DirectoryNode): void {
  w.bytes(1, n.name)
  w.bytes(2, n.digest)
  w.uint(3, n.size)
}

function writeFileNode(w: Writer, n: FileNode): void {
  w.bytes(1, n.name)
  w.bytes(2, n.digest)
  w.uint(3, n.size)
  w.bool(4, n.executable)
}

function writeSymlinkNode(w: Writer, n: SymlinkNode): void {
  w.bytes(1, n.name)
  w.bytes(2, n.target)
}

function readDirNode(buf: Uint8Array): DirectoryNode {
  const n: DirectoryNode = { kind: 'directory', name: EMPTY, digest: EMPTY, size: 0 }
  for (const f of fields(buf)) {
    if (f.field === 1) n.name = asBytes(f, 'name')
    else if (f.field === 2) n.digest = asBytes(f, 'digest')
    else if (f.field === 3) n.size = asUint(f, 'size')
  }
  return n
}

function readFileNode(buf: Uint8Array): FileNode {
  const n: FileNode = { kind: 'file', name: EMPTY, digest: EMPTY, size: 0, executable: false }
  for (const f of fields(buf)) {
    if (f.field === 1) n.name = asBytes(f, 'name')
    else if (f.field === 2) n.digest = asBytes(f, 'digest')
    else if (f.field === 3) n.size = asUint(f, 'size')
    else if (f.field === 4) n.executable = asUint(f, 'executable') !== 0
  }
  return n
}

function readSymlinkNode(buf: Uint8Array): SymlinkNode {
  const n: SymlinkNode = { kind: 'symlink', name: EMPTY, target: EMPTY }
  for (const f of fields(buf)) {
    if (f.field === 1) n.name = asBytes(f, 'name')
    else if (f.field === 2) n.target = asBytes(f, 'target')
  }
  return n
}

// --- Directory -------------------------------------------------------------

/** The canonical bytes whose BLAKE3 is the Directory's identity. */
export function encodeDirectory(d: Directory): Uint8Array {
  return encode((w) => {
    for (const n of d.directories) w.message(1, (m) => writeDirNode(m, n))
    for (const n of d.files) w.message(2, (m) => writeFileNode(m, n))
    for (const n of d.symlinks) w.message(3, (m) => writeSymlinkNode(m, n))
  })
}

/**
 * A Directory encoded as its entries come, in name order (a walk's, a
 * NAR's): each goes straight into the bytes of its kind, so a folder of
 * many files is held as its encoding (~50 bytes an entry), not as nodes.
 * finish() gives the bytes encodeDirectory() gives the same entries.
 */
export class DirectoryEncoder {
  private readonly kinds = { directory: new Writer(), file: new Writer(), symlink: new Writer() }
  /** Recursive entry count (SPEC 2.2), as directorySize() counts it. */
  size = 0

  add(n: Node): void {
    const w = this.kinds[n.kind]
    if (n.kind === 'directory') w.message(1, (m) => writeDirNode(m, n))
    else if (n.kind === 'file') w.message(2, (m) => writeFileNode(m, n))
    else w.message(3, (m) => writeSymlinkNode(m, n))
    this.size += 1 + (n.kind === 'directory' ? n.size : 0)
    if (!Number.isSafeInteger(this.size)) throw new InvalidInputError('directory size overflows')
  }

  finish(): Uint8Array {
    const { directory, file, symlink } = this.kinds
    return Buffer.concat([directory.finish(), file.finish(), symlink.finish()])
  }
}

export function decodeDirectory(buf: Uint8Array): Directory {
  return described('Directory', () => readDirectory(buf))
}

/** How many entries a Directory message holds, counted without decoding them (a decoded entry costs a few hundred bytes). */
export function directoryEntryCount(buf: Uint8Array): number {
  return described('Directory', () => {
    let n = 0
    for (const f of fields(buf)) if (f.field >= 1 && f.field <= 3) n++
    return n
  })
}

/** The digests of a Directory's child Directories, read from its bytes without decoding its other entries. */
export function childDirectoryDigests(buf: Uint8Array): Uint8Array[] {
  return described('Directory', () => {
    const out: Uint8Array[] = []
    for (const f of fields(buf)) if (f.field === 1) out.push(readDirNode(asBytes(f, 'directories')).digest)
    return out
  })
}

function readDirectory(buf: Uint8Array): Directory {
  const d: Directory = { directories: [], files: [], symlinks: [] }
  for (const f of fields(buf)) {
    if (f.field === 1) d.directories.push(readDirNode(asBytes(f, 'directories')))
    else if (f.field === 2) d.files.push(readFileNode(asBytes(f, 'files')))
    else if (f.field === 3) d.symlinks.push(readSymlinkNode(asBytes(f, 'symlinks')))
  }
  return d
}

// --- Node (oneof) ----------------------------------------------------------

/** A Node (oneof) into the message being written; store/proto.ts embeds it in PathInfo. */
export function writeNode(w: Writer, n: Node): void {
  switch (n.kind) {
    case 'directory':
      return w.message(1, (m) => writeDirNode(m, n))
    case 'file':
      return w.message(2, (m) => writeFileNode(m, n))
    case 'symlink':
      return w.message(3, (m) => writeSymlinkNode(m, n))
  }
}

export function encodeNode(n: Node): Uint8Array {
  return encode((w) => writeNode(w, n))
}

/** A Node message; throws if no member of the oneof is set. The last member wins, as in protobuf. */
export function decodeNode(buf: Uint8Array): Node {
  return described('Node', () => readNode(buf))
}

/** The Node in `buf`, undescribed: the caller names the outer message in errors. */
export function readNode(buf: Uint8Array): Node {
  const node = readNodeIfSet(buf)
  if (!node) throw new InvalidInputError('node is not set')
  return node
}

/** The Node in `buf`, or undefined if no member is set (a PathInfo's node sent twice merges, and one part may lack it). */
export function readNodeIfSet(buf: Uint8Array): Node | undefined {
  // A member sent again merges into the one before; another member replaces it (the replaced one is still read: prost refuses it if malformed).
  let member = 0
  let parts: Uint8Array[] = []
  for (const f of fields(buf)) {
    if (f.field < 1 || f.field > 3) continue
    const payload = asBytes(f, MEMBERS[f.field - 1]!)
    if (f.field !== member && member !== 0) readMerged(parts, MEMBER_READERS[member - 1]!)
    if (f.field !== member) parts = []
    member = f.field
    parts.push(payload)
  }
  return member === 0 ? undefined : readMerged(parts, MEMBER_READERS[member - 1]!)
}

const MEMBERS = ['directory', 'file', 'symlink']
const MEMBER_READERS: Array<(b: Uint8Array) => Node> = [readDirNode, readFileNode, readSymlinkNode]

