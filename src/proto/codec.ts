/**
 * Binary encodings of the domain types, field for field as in protos/.
 * Hand-written on purpose: the messages are few and small, the canonical
 * form must be exact (Directory digests are BLAKE3 over these bytes), and
 * loading @bufbuild/protobuf's runtime costs 30-60 ms of CLI start-up. The
 * tests check every message against the generated @bufbuild/protobuf code
 * (test/proto/codec.test.ts), which stays the reference for gRPC.
 */
import type { Directory } from '../castore/directory.js'
import type { DirectoryNode, FileNode, Node, SymlinkNode } from '../castore/node.js'
import { InvalidInputError } from '../errors.js'
import type { NarInfo, PathInfo, Signature } from '../store/path-info.js'
import type { StorePath } from '../store/store-path.js'
import { type Field, type Writer, asBytes, asUint, encode, fields } from './wire.js'

const EMPTY: Uint8Array = new Uint8Array(0)
const utf8 = new TextDecoder('utf-8', { fatal: true })

function str(f: Field, name: string): string {
  try {
    return utf8.decode(asBytes(f, name))
  } catch (e) {
    if (e instanceof InvalidInputError) throw e
    throw new InvalidInputError(`malformed protobuf: ${name} is not valid UTF-8`)
  }
}

/** Names the message in decoding errors: "malformed PathInfo message: truncated varint". */
function described<T>(what: string, fn: () => T): T {
  try {
    return fn()
  } catch (e) {
    const msg = (e as Error).message.replace(/^malformed protobuf: /, '')
    throw new InvalidInputError(`malformed ${what} message: ${msg}`, { cause: e })
  }
}

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

export function decodeDirectory(buf: Uint8Array): Directory {
  return described('Directory', () => readDirectory(buf))
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

function writeNode(w: Writer, n: Node): void {
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

function readNode(buf: Uint8Array): Node {
  let node: Node | undefined
  for (const f of fields(buf)) {
    if (f.field === 1) node = readDirNode(asBytes(f, 'directory'))
    else if (f.field === 2) node = readFileNode(asBytes(f, 'file'))
    else if (f.field === 3) node = readSymlinkNode(asBytes(f, 'symlink'))
  }
  if (!node) throw new InvalidInputError('node is not set')
  return node
}

// --- PathInfo --------------------------------------------------------------

function writeStorePath(w: Writer, p: StorePath): void {
  w.string(1, p.name)
  w.bytes(2, p.digest)
}

function writeNarInfo(w: Writer, ni: NarInfo): void {
  w.uint(1, ni.narSize)
  w.bytes(2, ni.narSha256)
  for (const s of ni.signatures) {
    w.message(3, (m) => {
      m.string(1, s.name)
      m.bytes(2, s.data)
    })
  }
  for (const r of ni.referenceNames) w.bytesAlways(4, Buffer.from(r, 'utf8'))
  if (ni.deriver) w.message(5, (m) => writeStorePath(m, ni.deriver!))
  if (ni.ca) {
    const ca = ni.ca
    w.message(6, (m) => {
      m.uint(1, ca.type)
      m.bytes(2, ca.digest)
    })
  }
}

export function encodePathInfo(p: PathInfo): Uint8Array {
  return encode((w) => {
    w.message(1, (m) => writeNode(m, p.node))
    for (const r of p.references) w.bytesAlways(2, r)
    if (p.narinfo) w.message(3, (m) => writeNarInfo(m, p.narinfo!))
  })
}

function readStorePath(buf: Uint8Array): StorePath {
  const p: StorePath = { name: '', digest: EMPTY }
  for (const f of fields(buf)) {
    if (f.field === 1) p.name = str(f, 'deriver.name')
    else if (f.field === 2) p.digest = asBytes(f, 'deriver.digest')
  }
  return p
}

function readNarInfo(buf: Uint8Array): NarInfo {
  const ni: NarInfo = { narSize: 0, narSha256: EMPTY, signatures: [], referenceNames: [] }
  for (const f of fields(buf)) {
    switch (f.field) {
      case 1:
        ni.narSize = asUint(f, 'nar_size')
        break
      case 2:
        ni.narSha256 = asBytes(f, 'nar_sha256')
        break
      case 3: {
        const s: Signature = { name: '', data: EMPTY }
        for (const g of fields(asBytes(f, 'signatures'))) {
          if (g.field === 1) s.name = str(g, 'signature.name')
          else if (g.field === 2) s.data = asBytes(g, 'signature.data')
        }
        ni.signatures.push(s)
        break
      }
      case 4:
        ni.referenceNames.push(str(f, 'reference_names'))
        break
      case 5:
        ni.deriver = readStorePath(asBytes(f, 'deriver'))
        break
      case 6: {
        const ca = { type: 0, digest: EMPTY }
        for (const g of fields(asBytes(f, 'ca'))) {
          if (g.field === 1) ca.type = asUint(g, 'ca.type')
          else if (g.field === 2) ca.digest = asBytes(g, 'ca.digest')
        }
        ni.ca = ca
        break
      }
    }
  }
  return ni
}

export function decodePathInfo(buf: Uint8Array): PathInfo {
  return described('PathInfo', () => readPathInfo(buf))
}

function readPathInfo(buf: Uint8Array): PathInfo {
  let node: Node | undefined
  const references: Uint8Array[] = []
  let narinfo: NarInfo | undefined
  for (const f of fields(buf)) {
    if (f.field === 1) node = readNode(asBytes(f, 'node'))
    else if (f.field === 2) references.push(asBytes(f, 'references'))
    else if (f.field === 3) narinfo = readNarInfo(asBytes(f, 'narinfo'))
  }
  if (!node) throw new InvalidInputError('node is not set')
  return narinfo ? { node, references, narinfo } : { node, references }
}
