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
  return readDirectoryPlain(buf) ?? described('Directory', () => readDirectory(buf))
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
  const plain = new PlainReader(buf)
  const out: Uint8Array[] = []
  for (let tag = plain.tag(); tag > 0; tag = plain.tag()) {
    const end = plain.end()
    if (end < 0 || tag > 0x1a || (tag & 7) !== 2) break
    if (tag === 0x0a) {
      const n = plain.node(end, 'directory') as DirectoryNode | undefined
      if (!n) break
      out.push(n.digest)
    }
    plain.pos = end
  }
  if (plain.done) return out
  return described('Directory', () => {
    const out: Uint8Array[] = []
    for (const f of fields(buf)) if (f.field === 1) out.push(readDirNode(asBytes(f, 'directories')).digest)
    return out
  })
}

/**
 * A Directory read in one pass, when it has only the fields of its
 * schema, each with its own wire type (as encodeDirectory writes it, in
 * any order): no field object per field, as the generic reader makes
 * (the most a client reading a daemon's closure allocated). Undefined for
 * anything else (an unknown field, a long varint, bytes cut short): the
 * generic reader then reads it, or refuses it with the reason.
 */
function readDirectoryPlain(buf: Uint8Array): Directory | undefined {
  const plain = new PlainReader(buf)
  const d: Directory = { directories: [], files: [], symlinks: [] }
  for (let tag = plain.tag(); tag > 0; tag = plain.tag()) {
    const end = plain.end()
    const n = end < 0 ? undefined : tag === 0x0a ? plain.node(end, 'directory') : tag === 0x12 ? plain.node(end, 'file') : tag === 0x1a ? plain.node(end, 'symlink') : undefined
    if (!n) return undefined
    if (n.kind === 'directory') d.directories.push(n)
    else if (n.kind === 'file') d.files.push(n)
    else d.symlinks.push(n)
  }
  return plain.done ? d : undefined
}

/** The reading behind readDirectoryPlain: each step gives -1 or undefined where the bytes are not plain, and stops (`done` stays false). */
class PlainReader {
  pos = 0
  private failed = false

  constructor(private readonly buf: Uint8Array) {}

  /** All of it read, nothing unusual met. */
  get done(): boolean {
    return !this.failed && this.pos === this.buf.length
  }

  /** The next field's tag (one byte: fields 1-15), 0 at the end, -1 on anything else. */
  tag(): number {
    if (this.failed || this.pos >= this.buf.length) return 0
    const t = this.buf[this.pos++]!
    // Field 0 is no field, and a tag of more than one byte is no field of ours.
    if (t >= 0x80 || t < 8) return this.fail()
    return t
  }

  /** Where a length-delimited field whose tag was just read ends, or -1. */
  end(): number {
    const len = this.varint()
    return len < 0 || len > this.buf.length - this.pos ? this.fail() : this.pos + len
  }

  /** A varint of up to 7 bytes (below 2^49, so exact), or -1. */
  varint(): number {
    let v = 0
    for (let i = 0, mul = 1; i < 7 && this.pos < this.buf.length; i++, mul *= 128) {
      const b = this.buf[this.pos++]!
      v += (b & 0x7f) * mul
      if (b < 0x80) return v
    }
    return this.fail()
  }

  /** A node of `kind` whose message ends at `end`, last value of a field winning as in the generic reader. */
  node(end: number, kind: Node['kind']): Node | undefined {
    const { buf } = this
    let name = EMPTY
    let second = EMPTY
    let size = 0
    let executable = false
    while (this.pos < end) {
      const t = buf[this.pos++]!
      if (t === 0x0a || t === 0x12) {
        const to = this.end()
        if (to < 0 || to > end) return void this.fail()
        const v = buf.subarray(this.pos, to)
        this.pos = to
        if (t === 0x0a) name = v
        else second = v
      } else if ((t === 0x18 && kind !== 'symlink') || (t === 0x20 && kind === 'file')) {
        const v = this.varint()
        if (v < 0 || this.pos > end) return void this.fail()
        if (t === 0x18) size = v
        else executable = v !== 0
      } else return void this.fail()
    }
    if (kind === 'directory') return { kind, name, digest: second, size }
    if (kind === 'file') return { kind, name, digest: second, size, executable }
    return { kind, name, target: second }
  }

  private fail(): -1 {
    this.failed = true
    return -1
  }
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

