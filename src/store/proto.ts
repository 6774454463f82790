/**
 * Binary encoding of the store's PathInfo, field for field as in
 * protos/tvix/store; its root Node is castore's encoding (castore/proto.ts).
 * Hand-written for the reasons given there, and checked the same way
 * against the generated code (test/proto/codec.test.ts).
 */
import { readNodeIfSet, writeNode } from '../castore/proto.js'
import { InvalidInputError } from '../errors.js'
import { type Writer, asBytes, asString, asUint, described, encode, fields, readMerged } from '../proto/wire.js'
import type { ContentAddress, NarInfo, PathInfo, Signature } from './path-info.js'
import type { StorePath } from './store-path.js'

const EMPTY: Uint8Array = new Uint8Array(0)

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
    if (f.field === 1) p.name = asString(f, 'deriver.name')
    else if (f.field === 2) p.digest = asBytes(f, 'deriver.digest')
  }
  return p
}

function readCa(buf: Uint8Array): ContentAddress {
  const ca = { type: 0, digest: EMPTY }
  for (const g of fields(buf)) {
    if (g.field === 1) ca.type = asUint(g, 'ca.type')
    else if (g.field === 2) ca.digest = asBytes(g, 'ca.digest')
  }
  return ca
}

function readNarInfo(buf: Uint8Array): NarInfo {
  const ni: NarInfo = { narSize: 0, narSha256: EMPTY, signatures: [], referenceNames: [] }
  // Singular sub-messages sent more than once merge (see merged()).
  const deriver: Uint8Array[] = []
  const ca: Uint8Array[] = []
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
          if (g.field === 1) s.name = asString(g, 'signature.name')
          else if (g.field === 2) s.data = asBytes(g, 'signature.data')
        }
        ni.signatures.push(s)
        break
      }
      case 4:
        ni.referenceNames.push(asString(f, 'reference_names'))
        break
      case 5:
        deriver.push(asBytes(f, 'deriver'))
        break
      case 6:
        ca.push(asBytes(f, 'ca'))
        break
    }
  }
  if (deriver.length > 0) ni.deriver = readMerged(deriver, readStorePath)
  if (ca.length > 0) ni.ca = readMerged(ca, readCa)
  return ni
}

export function decodePathInfo(buf: Uint8Array): PathInfo {
  return described('PathInfo', () => readPathInfo(buf))
}

function readPathInfo(buf: Uint8Array): PathInfo {
  const node: Uint8Array[] = []
  const references: Uint8Array[] = []
  const narinfo: Uint8Array[] = []
  for (const f of fields(buf)) {
    if (f.field === 1) node.push(asBytes(f, 'node'))
    else if (f.field === 2) references.push(asBytes(f, 'references'))
    else if (f.field === 3) narinfo.push(asBytes(f, 'narinfo'))
  }
  const root = node.length === 0 ? undefined : readMerged(node, readNodeIfSet)
  if (!root) throw new InvalidInputError('node is not set')
  const info: PathInfo = { node: root, references }
  if (narinfo.length > 0) info.narinfo = readMerged(narinfo, readNarInfo)
  return info
}
