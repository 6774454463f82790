/**
 * Generates the gRPC request messages of the bad-input corpus
 * (test/corpus/grpc/): raw protobuf bytes, one file per message, named
 * `<case>.bin`, or `<case>.<i>.bin` for the i-th message of a client stream.
 * Deterministic; run by hand after changing a case, and commit the result:
 *
 *   node --import tsx test/corpus/make-grpc.ts
 *
 * test/e2e/bad-input.test.ts checks the committed files are exactly what
 * grpcCorpus() returns. The messages are written with the small protobuf
 * writer below, not with the codec under test. Each breaks one rule and is
 * otherwise a copy of a valid message; the `control-*` messages are those
 * valid messages themselves, which the test sends last and expects to be
 * accepted. Digests of the seed tree (make-nars.ts seedNar(), which every
 * store in the test starts from) are computed here, so "stored" children
 * and root data really are in the store the messages go to.
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { b3 } from '../../src/castore/digest.js'

export const GRPC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'grpc')

// --- a minimal protobuf writer (varints and length-delimited fields only) --

type Value = number | bigint | Uint8Array | string | Msg
/** A message as its fields in order: [field number, value]. Written exactly as listed. */
type Msg = Array<[number, Value]>

/** A protobuf varint (the fuzz mutator writes lying lengths with it too). */
export function varint(n: number | bigint): Buffer {
  let v = BigInt(n)
  const out: number[] = []
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80)
    v >>= 7n
  }
  out.push(Number(v))
  return Buffer.from(out)
}

function encode(msg: Msg): Buffer {
  const parts: Buffer[] = []
  for (const [field, value] of msg) {
    if (typeof value === 'number' || typeof value === 'bigint') {
      parts.push(varint(field * 8), varint(value))
      continue
    }
    const bytes = Array.isArray(value) ? encode(value) : Buffer.from(value as Uint8Array | string)
    parts.push(varint(field * 8 + 2), varint(bytes.length), bytes)
  }
  return Buffer.concat(parts)
}

// --- tvix messages, canonical where the inputs are (defaults omitted) ------

const hex = (h: string) => Buffer.from(h, 'hex')
const bytes = (n: number, fill: number) => Buffer.alloc(n, fill)
const opt = (field: number, v: Uint8Array | string | number): Msg => {
  if (typeof v === 'number') return v === 0 ? [] : [[field, v]]
  return v.length === 0 ? [] : [[field, v]]
}

const dirNode = (name: string | Uint8Array, digest: Uint8Array, size: number | bigint): Msg => [
  ...opt(1, name),
  ...opt(2, digest),
  ...(size === 0 || size === 0n ? [] : ([[3, size]] as Msg)),
]
const fileNode = (name: string | Uint8Array, digest: Uint8Array, size: number, executable = false): Msg => [
  ...opt(1, name),
  ...opt(2, digest),
  ...opt(3, size),
  ...(executable ? ([[4, 1]] as Msg) : []),
]
const symlinkNode = (name: string | Uint8Array, target: string | Uint8Array): Msg => [...opt(1, name), ...opt(2, target)]

interface Dir {
  directories?: Msg[]
  files?: Msg[]
  symlinks?: Msg[]
}
const directory = (d: Dir): Buffer =>
  encode([
    ...(d.directories ?? []).map((n): [number, Value] => [1, n]),
    ...(d.files ?? []).map((n): [number, Value] => [2, n]),
    ...(d.symlinks ?? []).map((n): [number, Value] => [3, n]),
  ])

/** A Node message (oneof: 1 directory, 2 file, 3 symlink). */
const node = (kind: 'directory' | 'file' | 'symlink', n: Msg): Msg => [[{ directory: 1, file: 2, symlink: 3 }[kind], n]]

// --- the seed tree, as stored by importing nar/seed.nar ----------------------

const blake3 = (b: Uint8Array) => Buffer.from(b3(b))
const A_TXT = blake3(Buffer.from('Hello World!'))
const B_TXT = blake3(Buffer.from('abc'))
/** seed/sub: { files: [b.txt] }, size 1. */
const SUB = blake3(directory({ files: [fileNode('b.txt', B_TXT, 3)] }))
/** seed: { directories: [sub], files: [a.txt], symlinks: [link -> a.txt] }, size 4. */
const ROOT = blake3(
  directory({ directories: [dirNode('sub', SUB, 1)], files: [fileNode('a.txt', A_TXT, 12)], symlinks: [symlinkNode('link', 'a.txt')] }),
)
/** Digests the seeded store does not have. */
const ABSENT_B3 = bytes(32, 0xab)
const ABSENT_B3_2 = bytes(32, 0xcd)

/** Hex digests of the seed's stored objects, for the test's sanity checks. */
export const SEED = {
  blobs: { 'a.txt': A_TXT.toString('hex'), 'sub/b.txt': B_TXT.toString('hex') },
  directories: { sub: SUB.toString('hex'), root: ROOT.toString('hex') },
}

// --- a valid PathInfo, and variants that break one rule each ----------------

/** nixbase32 (SPEC 4.1), decoding only, written out here rather than taken from the code under test. */
function nixbase32Decode(s: string): Buffer {
  const alphabet = '0123456789abcdfghijklmnpqrsvwxyz'
  const out = Buffer.alloc(Math.floor((s.length * 5) / 8))
  for (let n = 0; n < s.length; n++) {
    const digit = alphabet.indexOf(s[s.length - 1 - n]!)
    const b = n * 5
    const i = b >> 3
    const j = b & 7
    out[i]! |= (digit << j) & 0xff
    if (i + 1 < out.length) out[i + 1]! |= digit >> (8 - j)
  }
  return out
}

/** SPEC 4.1's example pair: this 20-byte digest is `00bgd045z0d4icpbc2yyz4gx48ak44la` in nixbase32. */
const REF = hex('8a12321522fd91efbd60ebb2481af88580f61600')
const REF_NAME = '00bgd045z0d4icpbc2yyz4gx48ak44la-dep'
const ROOT_NAME = 'ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-corpus'
/** The seed's own store path (cases.ts SEED_PATH), which every store in the test has. */
const SEED_BASENAME = 'vg7b7nlwcrld582iz3k9kcr43s8ycip1-seed'
const SEED_DIGEST = nixbase32Decode(SEED_BASENAME.slice(0, 32))
/** An input-addressed PathInfo needing nothing but its tree: no references, no CA. */
const noRefsNoCa = (): PathInfoParts => ({ references: [], narinfo: { referenceNames: [], ca: null } })

interface PathInfoParts {
  node?: Msg | null
  references?: Uint8Array[]
  narinfo?: NarInfoParts | null
}
interface NarInfoParts {
  narSize?: number
  narSha256?: Uint8Array
  signatures?: Array<{ name: string; data: Uint8Array }>
  referenceNames?: Array<string | Uint8Array>
  deriver?: { name: string; digest: Uint8Array } | null
  ca?: { type: number; digest: Uint8Array } | null
}

function pathInfo(p: PathInfoParts = {}): Buffer {
  const n = p.node === undefined ? node('directory', dirNode(ROOT_NAME, ROOT, 4)) : p.node
  const refs = p.references ?? [REF]
  const msg: Msg = []
  if (n) msg.push([1, n])
  for (const r of refs) msg.push([2, r])
  if (p.narinfo !== null) {
    const ni = p.narinfo ?? {}
    const ca = ni.ca === undefined ? { type: 0, digest: bytes(32, 0x11) } : ni.ca
    const deriver = ni.deriver === undefined ? { name: 'corpus', digest: bytes(20, 0x22) } : ni.deriver
    const narinfo: Msg = [...opt(1, ni.narSize ?? 1234), ...opt(2, ni.narSha256 ?? bytes(32, 0x11))]
    for (const s of ni.signatures ?? [{ name: 'cache.example.org-1', data: bytes(64, 0x33) }]) narinfo.push([3, [...opt(1, s.name), ...opt(2, s.data)]])
    for (const r of ni.referenceNames ?? [REF_NAME]) narinfo.push([4, r])
    if (deriver) narinfo.push([5, [...opt(1, deriver.name), ...opt(2, deriver.digest)]])
    if (ca) narinfo.push([6, [...opt(1, ca.type), ...opt(2, ca.digest)]])
    msg.push([3, narinfo])
  }
  return encode(msg)
}

/** A leaf Directory not in the seed (its blob is absent, which Directory Put does not check). */
const LEAF: Dir = { files: [fileNode('x', ABSENT_B3, 1)] }
const LEAF_DIGEST = blake3(directory(LEAF))
const LEAF2: Dir = { files: [fileNode('y', ABSENT_B3_2, 2)] }
const ok = () => fileNode('ok', A_TXT, 12)
/** Malformed protobuf: a length-delimited field claiming more bytes than follow. */
const TRUNCATED_FIELD = hex('0aff01')

/** File name (under grpc/) -> bytes. */
export function grpcCorpus(): Map<string, Buffer> {
  const single: Array<[string, Buffer]> = [
    // DirectoryService/Put: each rule of validateDirectory and of a closure.
    ['dir-put-files-unsorted', directory({ files: [fileNode('b', A_TXT, 12), fileNode('a', A_TXT, 12)] })],
    ['dir-put-directories-unsorted', directory({ directories: [dirNode('y', SUB, 1), dirNode('x', SUB, 1)] })],
    ['dir-put-symlinks-unsorted', directory({ symlinks: [symlinkNode('b', 't'), symlinkNode('a', 't')] })],
    ['dir-put-files-duplicate-name', directory({ files: [fileNode('a', A_TXT, 12), fileNode('a', A_TXT, 12)] })],
    ['dir-put-name-in-directories-and-files', directory({ directories: [dirNode('a', SUB, 1)], files: [fileNode('a', A_TXT, 12)] })],
    ['dir-put-name-in-files-and-symlinks', directory({ files: [fileNode('a', A_TXT, 12)], symlinks: [symlinkNode('a', 't')] })],
    ['dir-put-name-in-directories-and-symlinks', directory({ directories: [dirNode('a', SUB, 1)], symlinks: [symlinkNode('a', 't')] })],
    ['dir-put-name-empty', directory({ files: [fileNode('', A_TXT, 12)] })],
    ['dir-put-name-dot', directory({ directories: [dirNode('.', SUB, 1)] })],
    ['dir-put-name-dotdot', directory({ symlinks: [symlinkNode('..', 't')] })],
    ['dir-put-name-with-slash', directory({ files: [fileNode('a/b', A_TXT, 12)] })],
    ['dir-put-name-with-nul', directory({ files: [fileNode(Buffer.from('a\0b'), A_TXT, 12)] })],
    ['dir-put-name-over-255-bytes', directory({ files: [fileNode('n'.repeat(256), A_TXT, 12)] })],
    ['dir-put-file-digest-31-bytes', directory({ files: [fileNode('a', A_TXT.subarray(0, 31), 12)] })],
    ['dir-put-file-digest-33-bytes', directory({ files: [fileNode('a', Buffer.concat([A_TXT, bytes(1, 0)]), 12)] })],
    ['dir-put-file-digest-missing', directory({ files: [fileNode('a', new Uint8Array(0), 12)] })],
    ['dir-put-directory-digest-20-bytes', directory({ directories: [dirNode('a', SUB.subarray(0, 20), 1)] })],
    ['dir-put-child-neither-sent-nor-stored', directory({ directories: [dirNode('a', ABSENT_B3, 1)] })],
    ['dir-put-stored-child-wrong-size', directory({ directories: [dirNode('a', SUB, 2)] })],
    ['dir-put-size-overflows', directory({ directories: [dirNode('a', SUB, Number.MAX_SAFE_INTEGER)], files: [ok()] })],
    ['dir-put-file-size-not-the-stored-blobs', directory({ files: [fileNode('a', A_TXT, 5)] })],
    ['dir-put-symlink-empty-target', directory({ symlinks: [symlinkNode('a', '')] })],
    ['dir-put-symlink-target-with-nul', directory({ symlinks: [symlinkNode('a', 'x\0y')] })],
    ['dir-put-symlink-target-over-4095-bytes', directory({ symlinks: [symlinkNode('a', 't'.repeat(4096))] })],
    ['dir-put-malformed-protobuf', TRUNCATED_FIELD],
    ['dir-put-name-wrong-wire-type', encode([[2, [[1, 7]]]])],

    // DirectoryService/Get, BlobService/Stat and Read: digest lengths and absence.
    ['dir-get-digest-31-bytes', encode([[1, SUB.subarray(0, 31)]])],
    ['dir-get-digest-empty', encode([[1, new Uint8Array(0)]])],
    ['dir-get-digest-unset', encode([])],
    ['dir-get-recursive-digest-33-bytes', encode([[1, Buffer.concat([SUB, bytes(1, 0)])], [2, 1]])],
    ['dir-get-absent', encode([[1, ABSENT_B3]])],
    ['blob-stat-digest-31-bytes', encode([[1, A_TXT.subarray(0, 31)]])],
    ['blob-stat-digest-64-bytes', encode([[1, Buffer.concat([A_TXT, A_TXT])]])],
    ['blob-stat-digest-unset', encode([])],
    ['blob-stat-digest-wrong-wire-type', encode([[1, 32]])],
    ['blob-stat-absent', encode([[1, ABSENT_B3]])],
    ['blob-read-digest-20-bytes', encode([[1, A_TXT.subarray(0, 20)]])],
    ['blob-read-digest-unset', encode([])],
    ['blob-read-absent', encode([[1, ABSENT_B3]])],

    // PathInfoService/Put: each rule of validatePathInfo, then data the store lacks.
    ['pathinfo-put-root-name-not-a-basename', pathInfo({ node: node('directory', dirNode('corpus', ROOT, 4)) })],
    ['pathinfo-put-root-name-empty', pathInfo({ node: node('directory', dirNode('', ROOT, 4)) })],
    ['pathinfo-put-root-name-hash-with-e', pathInfo({ node: node('directory', dirNode('eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-corpus', ROOT, 4)) })],
    ['pathinfo-put-root-name-bad-character', pathInfo({ node: node('directory', dirNode('ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-has space', ROOT, 4)) })],
    ['pathinfo-put-root-name-over-211-chars', pathInfo({ node: node('directory', dirNode(`ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-${'n'.repeat(212)}`, ROOT, 4)) })],
    ['pathinfo-put-root-digest-31-bytes', pathInfo({ node: node('directory', dirNode(ROOT_NAME, ROOT.subarray(0, 31), 4)) })],
    ['pathinfo-put-root-file-digest-empty', pathInfo({ node: node('file', fileNode(ROOT_NAME, new Uint8Array(0), 12)) })],
    ['pathinfo-put-root-symlink-empty-target', pathInfo({ node: node('symlink', symlinkNode(ROOT_NAME, '')) })],
    ['pathinfo-put-root-symlink-target-with-nul', pathInfo({ node: node('symlink', symlinkNode(ROOT_NAME, 'a\0b')) })],
    ['pathinfo-put-node-missing', pathInfo({ node: null })],
    ['pathinfo-put-node-oneof-unset', pathInfo({ node: [] })],
    ['pathinfo-put-reference-19-bytes', pathInfo({ references: [REF.subarray(0, 19)] })],
    ['pathinfo-put-fewer-reference-names-than-references', pathInfo({ narinfo: { referenceNames: [] } })],
    ['pathinfo-put-more-reference-names-than-references', pathInfo({ references: [] })],
    ['pathinfo-put-reference-name-does-not-match-digest', pathInfo({ narinfo: { referenceNames: ['ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-dep'] } })],
    ['pathinfo-put-reference-name-without-hash', pathInfo({ narinfo: { referenceNames: ['dep'] } })],
    ['pathinfo-put-reference-name-not-utf8', pathInfo({ narinfo: { referenceNames: [Buffer.from([0x30, 0xff, 0xfe])] } })],
    ['pathinfo-put-narinfo-missing', pathInfo({ narinfo: null })],
    ['pathinfo-put-nar-sha256-31-bytes', pathInfo({ narinfo: { narSha256: bytes(31, 0x11) } })],
    ['pathinfo-put-nar-sha256-missing', pathInfo({ narinfo: { narSha256: new Uint8Array(0) } })],
    ['pathinfo-put-signature-63-bytes', pathInfo({ narinfo: { signatures: [{ name: 'cache.example.org-1', data: bytes(63, 0x33) }] } })],
    ['pathinfo-put-deriver-digest-19-bytes', pathInfo({ narinfo: { deriver: { name: 'corpus', digest: bytes(19, 0x22) } } })],
    ['pathinfo-put-deriver-name-bad-character', pathInfo({ narinfo: { deriver: { name: 'cor pus', digest: bytes(20, 0x22) } } })],
    ['pathinfo-put-ca-unknown-type', pathInfo({ narinfo: { ca: { type: 99, digest: bytes(32, 0x11) } } })],
    ['pathinfo-put-ca-digest-wrong-length', pathInfo({ narinfo: { ca: { type: 0, digest: bytes(20, 0x11) } } })],
    ['pathinfo-put-malformed-protobuf', TRUNCATED_FIELD],
    ['pathinfo-put-root-blob-not-stored', pathInfo({ node: node('file', fileNode(ROOT_NAME, ABSENT_B3, 12)) })],
    ['pathinfo-put-root-directory-not-stored', pathInfo({ node: node('directory', dirNode(ROOT_NAME, ABSENT_B3, 4)) })],
    // Then the admission rules beyond SPEC 3.5: sizes, references, no replacement, content addresses.
    ['pathinfo-put-root-file-size-wrong', pathInfo({ node: node('file', fileNode(ROOT_NAME, A_TXT, 999999)), ...noRefsNoCa() })],
    ['pathinfo-put-root-directory-size-wrong', pathInfo({ node: node('directory', dirNode(ROOT_NAME, ROOT, 5)), ...noRefsNoCa() })],
    ['pathinfo-put-reference-not-stored', pathInfo({ narinfo: { ca: null } })],
    ['pathinfo-put-reference-twice', pathInfo({ references: [SEED_DIGEST, SEED_DIGEST], narinfo: { referenceNames: [SEED_BASENAME, SEED_BASENAME], ca: null } })],
    ['pathinfo-put-replaces-seed', pathInfo({ node: node('file', fileNode(SEED_BASENAME, A_TXT, 12)), ...noRefsNoCa() })],
    ['pathinfo-put-ca-gives-another-path', pathInfo({ references: [], narinfo: { referenceNames: [] } })],

    // PathInfoService/Get and CalculateNAR.
    ['pathinfo-get-digest-19-bytes', encode([[1, REF.subarray(0, 19)]])],
    ['pathinfo-get-by-what-unset', encode([])],
    ['pathinfo-get-absent', encode([[1, REF]])],
    ['calculate-nar-node-unset', encode([])],
    ['calculate-nar-file-digest-31-bytes', encode(node('file', fileNode('', A_TXT.subarray(0, 31), 12)))],
    ['calculate-nar-symlink-empty-target', encode(node('symlink', symlinkNode('', '')))],
    ['calculate-nar-blob-not-stored', encode(node('file', fileNode('', ABSENT_B3, 12)))],
    ['calculate-nar-directory-not-stored', encode(node('directory', dirNode('', ABSENT_B3, 4)))],

    // Valid requests for the seed's own objects, sent to a daemon whose store was damaged on disk.
    ['seed-blob-read-a-txt', encode([[1, A_TXT]])],
    ['seed-dir-get-sub', encode([[1, SUB]])],
    ['seed-calculate-nar-root', encode(node('directory', dirNode('', ROOT, 4)))],

    // Controls: the valid messages the cases above were derived from.
    ['control-dir-put-valid', directory({ directories: [dirNode('a', SUB, 1)], files: [ok()], symlinks: [symlinkNode('s', 't')] })],
    ['control-pathinfo-put-valid', pathInfo({ references: [SEED_DIGEST], narinfo: { referenceNames: [SEED_BASENAME], ca: null } })],
  ]
  // Client streams of several Directories: one file per message.
  const streams: Array<[string, Buffer[]]> = [
    ['dir-put-sent-child-wrong-size', [directory(LEAF), directory({ directories: [dirNode('leaf', LEAF_DIGEST, 5)] })]],
    ['dir-put-closure-not-connected', [directory(LEAF), directory(LEAF2)]],
    ['dir-put-root-not-last', [directory(LEAF), directory({ directories: [dirNode('leaf', LEAF_DIGEST, 1)] }), directory(LEAF)]],
    ['dir-put-valid-then-unsorted', [directory(LEAF), directory({ directories: [dirNode('leaf', LEAF_DIGEST, 1)], files: [fileNode('b', A_TXT, 12), fileNode('a', A_TXT, 12)] })]],
  ]
  const out = new Map<string, Buffer>()
  const add = (name: string, b: Buffer) => {
    if (out.has(name)) throw new Error(`duplicate corpus file ${name}`)
    out.set(name, b)
  }
  for (const [name, b] of single) add(`${name}.bin`, b)
  for (const [name, msgs] of streams) msgs.forEach((b, i) => add(`${name}.${i}.bin`, b))
  return out
}

/** Rewrites grpc/ to exactly the generated set (stale files removed). */
function main(): void {
  const files = grpcCorpus()
  fs.mkdirSync(GRPC_DIR, { recursive: true })
  for (const f of fs.readdirSync(GRPC_DIR)) if (!files.has(f)) fs.rmSync(path.join(GRPC_DIR, f))
  for (const [name, bytes] of files) fs.writeFileSync(path.join(GRPC_DIR, name), bytes)
  process.stdout.write(`wrote ${files.size} files to ${path.relative(process.cwd(), GRPC_DIR) || '.'}\n`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) main()
