/**
 * Seeded mutants over a real socket (test/helpers/mutate.ts): valid gRPC
 * messages (blob chunks, Directory Put streams, PathInfos, the unary and
 * server-stream requests) and HTTP uploads (NARs, narinfos) to a daemon
 * serving a local store. Each outcome is a clean refusal (a gRPC status
 * for the client's fault, an HTTP 4xx) or a correct acceptance: what was
 * stored reads back as the generated @bufbuild/protobuf code reads what was
 * sent (blob bytes, a Directory's canonical bytes and digest, a PathInfo
 * whose NAR hash and size are its tree's), an uploaded NAR comes back
 * byte for byte. Never a crash, an INTERNAL, a 5xx or a hang (each call
 * bounded by HANG_MS, reported as a failure with its seed). Replay with
 * TVIX_FUZZ_SEED; TVIX_FUZZ_ITERATIONS sets each loop's count.
 */
import assert from 'node:assert/strict'
import { status as Status } from '@grpc/grpc-js'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type DescMessage, fromBinary, toBinary } from '@bufbuild/protobuf'
import { openStore } from '../../src/backends/open-store.js'
import { readAll } from '../../src/castore/blob-service.js'
import { b3 } from '../../src/castore/digest.js'
import { encodeDirectory, encodeNode } from '../../src/castore/proto.js'
import { blobChunk, digestMessage, getDirectoryRequest, statBlobRequest } from '../../src/grpc/messages.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import * as castorePb from '../../src/proto/gen/tvix/castore/protos/castore_pb.js'
import * as blobPb from '../../src/proto/gen/tvix/castore/protos/rpc_blobstore_pb.js'
import * as dirPb from '../../src/proto/gen/tvix/castore/protos/rpc_directory_pb.js'
import * as pathInfoPb from '../../src/proto/gen/tvix/store/protos/pathinfo_pb.js'
import * as rpcPathInfoPb from '../../src/proto/gen/tvix/store/protos/rpc_pathinfo_pb.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import { encodePathInfo } from '../../src/store/proto.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { type Format, type Mutator, fuzzIterations, fuzzLoop, fuzzSeed, referenceBytes } from '../helpers/mutate.js'
import { RawGrpc } from '../helpers/raw-grpc.js'
import { HANG_MS, rawRequest } from '../helpers/raw-http.js'
import { makeTree } from '../helpers/trees.js'

const SEED = fuzzSeed()
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-fuzz-daemon-'))
const store = path.join(root, 'store')

/** Statuses for what a client sent wrong or asked of what is absent; anything else (INTERNAL, UNKNOWN, UNAVAILABLE, a deadline) is a fault. */
const CLIENT_FAULTS = new Set([Status.INVALID_ARGUMENT, Status.NOT_FOUND, Status.ALREADY_EXISTS, Status.RESOURCE_EXHAUSTED, Status.FAILED_PRECONDITION, Status.UNIMPLEMENTED])

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest()
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
/** The reference's canonical bytes for an input we accepted: a refusal is a wrong acceptance; undefined where it is no judge (an overlong tag). */
function accepted(schema: DescMessage, bytes: Uint8Array): Buffer | undefined {
  const r = referenceBytes(schema, bytes)
  if (r === 'overlong tag') return undefined
  if (!Buffer.isBuffer(r)) throw new Error(`accepted what the generated code refuses: ${(r as { refused: string }).refused}`)
  return r
}

function assertRefusal(r: { code: number; details?: string }): false {
  assert.ok(CLIENT_FAULTS.has(r.code), `status ${Status[r.code]}: ${r.details}`)
  return false
}

interface Seed {
  /** Directory messages of the seed tree, leaves first, as a Put stream sends them. */
  directories: Buffer[]
  pathInfo: Buffer
  node: Buffer
  nar: Buffer
  rootDigest: Buffer
  /** The store path's digest (its hash part, decoded): what PathInfo Get asks by. */
  pathDigest: Buffer
}
let seed: Seed
let daemon: RunningDaemon
let grpc: RawGrpc
let port: number

/** `base` as a stream with one message (at a random place) mutated. */
function mutateOne(m: Mutator, base: Buffer[], format: Format): { input: Buffer[]; ops: string[]; shown: string } {
  const i = m.int(base.length)
  const { bytes, ops } = m.mutate(base[i]!, format)
  const input = base.map((b, j) => (j === i ? bytes : b))
  return { input, ops: [`message ${i} of ${base.length}`, ...ops], shown: bytes.toString('hex') }
}

describe(`a daemon fed seeded mutants (TVIX_FUZZ_SEED=${SEED})`, () => {
  before(async () => {
    const local = await openStore({ url: store })
    try {
      const imported = await importPath(local, makeTree(root, 'mixed', 'seed'))
      const node = imported.info.node
      assert.equal(node.kind, 'directory')
      const dirs = []
      for await (const d of local.directories.getClosure(node.kind === 'directory' ? node.digest : new Uint8Array())) dirs.push(Buffer.from(encodeDirectory(d)))
      seed = {
        directories: dirs.reverse(),
        pathInfo: Buffer.from(encodePathInfo(imported.info)),
        node: Buffer.from(encodeNode({ ...node, name: new Uint8Array(0) })),
        nar: await readAll(await exportNar(local, imported.storePath)),
        rootDigest: Buffer.from(node.kind === 'directory' ? node.digest : []),
        pathDigest: Buffer.from(nixbase32.decode(path.basename(imported.storePath).slice(0, 32))),
      }
    } finally {
      await local.close()
    }
    daemon = await startDaemon(store, `unix:${path.join(root, 'd.sock')}`, ['--http-listen', '127.0.0.1:0', '--http-upload'])
    port = Number(/Nix binary cache at http:\/\/127\.0\.0\.1:(\d+)/.exec(daemon.log())![1])
    grpc = new RawGrpc(daemon.url)
  })

  after(async () => {
    grpc?.close()
    if (daemon) {
      assert.equal(await daemon.stop(), 0, daemon.log().slice(-2000))
      for (const line of daemon.log().split('\n')) assert.doesNotMatch(line, /^\s+at |TypeError|RangeError/, line)
    }
    fs.rmSync(root, { recursive: true, force: true })
  })

  test('BlobService/Put: mutated chunks are refused, or stored as the bytes the generated code reads from them', async (t) => {
    const chunks = [blobChunk.encode(Buffer.from('first chunk of a blob, ')), blobChunk.encode(Buffer.alloc(300, 7)), blobChunk.encode(Buffer.from('end'))].map((b) => Buffer.from(b))
    const r0 = await fuzzLoop('BlobService/Put', SEED + 11, fuzzIterations(60), (m) => mutateOne(m, chunks, 'protobuf'), async (stream) => {
      const r = await grpc.clientStream('/tvix.castore.v1.BlobService/Put', stream, HANG_MS)
      if (r.code !== Status.OK) return assertRefusal(r)
      // A chunk the reference is no judge of (an overlong tag): its data as we read it.
      const data = Buffer.concat(stream.map((b) => {
        const canonical = accepted(blobPb.BlobChunkSchema, b)
        return Buffer.from(canonical ? fromBinary(blobPb.BlobChunkSchema, canonical).data : blobChunk.decode(b))
      }))
      const digest = fromBinary(blobPb.PutBlobResponseSchema, r.response!).digest
      assert.equal(hex(digest), hex(b3(data)), 'the digest is not that of the bytes sent')
      const back = await grpc.serverStream('/tvix.castore.v1.BlobService/Read', digestMessage.encode(digest), HANG_MS)
      assert.equal(back.code, Status.OK, back.details)
      assert.ok(Buffer.concat(back.messages.map((b) => Buffer.from(blobChunk.decode(b)))).equals(data), 'reads back as other bytes')
      return true
    })
    t.diagnostic(`${r0.accepted} accepted`)
  })

  test('DirectoryService/Put: a mutated message in the stream is refused, or the root stored is the canonical form of what was sent', async (t) => {
    const r0 = await fuzzLoop('DirectoryService/Put', SEED + 12, fuzzIterations(80), (m) => mutateOne(m, seed.directories, 'protobuf'), async (stream) => {
      const r = await grpc.clientStream('/tvix.castore.v1.DirectoryService/Put', stream, HANG_MS)
      if (r.code !== Status.OK) return assertRefusal(r)
      const canonical = accepted(castorePb.DirectorySchema, stream.at(-1)!)
      const digest = fromBinary(dirPb.PutDirectoryResponseSchema, r.response!).rootDigest
      const back = await grpc.serverStream('/tvix.castore.v1.DirectoryService/Get', getDirectoryRequest.encode({ digest, recursive: false }), HANG_MS)
      assert.equal(back.code, Status.OK, back.details)
      assert.equal(hex(digest), hex(b3(back.messages[0]!)), 'the root digest is not that of the Directory stored')
      if (canonical) assert.equal(hex(back.messages[0]!), hex(canonical), 'the stored Directory differs from the one sent')
      return true
    })
    t.diagnostic(`${r0.accepted} accepted`)
  })

  test('PathInfoService/Put: a mutated PathInfo is refused, or what is stored has the root sent and its true NAR hash and size', async (t) => {
    const r0 = await fuzzLoop('PathInfoService/Put', SEED + 13, fuzzIterations(80), (m) => mutateOne(m, [seed.pathInfo], 'protobuf'), async ([sent]) => {
      const r = await grpc.unary('/tvix.store.v1.PathInfoService/Put', sent!, HANG_MS)
      if (r.code !== Status.OK) return assertRefusal(r)
      const want = accepted(pathInfoPb.PathInfoSchema, sent!)
      const stored = fromBinary(pathInfoPb.PathInfoSchema, r.response!)
      if (want) assert.equal(hex(toBinary(castorePb.NodeSchema, stored.node!)), hex(toBinary(castorePb.NodeSchema, fromBinary(pathInfoPb.PathInfoSchema, want).node!)), 'stored another root')
      // The root without its name: what CalculateNAR takes.
      const node = fromBinary(castorePb.NodeSchema, toBinary(castorePb.NodeSchema, stored.node!))
      if (node.node.value) node.node.value.name = new Uint8Array(0)
      const calc = await grpc.unary('/tvix.store.v1.PathInfoService/CalculateNAR', toBinary(castorePb.NodeSchema, node), HANG_MS)
      assert.equal(calc.code, Status.OK, calc.details)
      const truth = fromBinary(rpcPathInfoPb.CalculateNARResponseSchema, calc.response!)
      assert.equal(stored.narinfo?.narSize, truth.narSize, 'stored a NarSize that is not its tree\'s')
      assert.equal(hex(stored.narinfo!.narSha256), hex(truth.narSha256), 'stored a NAR hash that is not its tree\'s')
      return true
    })
    t.diagnostic(`${r0.accepted} accepted`)
  })

  test('unary and server-stream requests (Stat, Read, Directory Get, PathInfo Get, CalculateNAR): answered, never with a server fault', async () => {
    const requests: Array<[string, Buffer, 'unary' | 'stream']> = [
      ['/tvix.castore.v1.BlobService/Stat', Buffer.from(statBlobRequest.encode({ digest: Buffer.alloc(32, 1), sendChunks: true, sendBao: false })), 'unary'],
      ['/tvix.castore.v1.BlobService/Read', Buffer.from(digestMessage.encode(b3(Buffer.from('abc')))), 'stream'],
      ['/tvix.castore.v1.DirectoryService/Get', Buffer.from(getDirectoryRequest.encode({ digest: seed.rootDigest, recursive: true })), 'stream'],
      ['/tvix.store.v1.PathInfoService/Get', Buffer.concat([Buffer.from([0x0a, 20]), seed.pathDigest]), 'unary'],
      ['/tvix.store.v1.PathInfoService/CalculateNAR', seed.node, 'unary'],
    ]
    await fuzzLoop('requests', SEED + 14, fuzzIterations(100), (m) => {
      const [method, body, kind] = m.pick(requests)
      const { bytes, ops } = m.mutate(body, 'protobuf')
      return { input: { method, body: bytes, kind }, ops: [method, ...ops], shown: bytes.toString('hex') }
    }, async ({ method, body, kind }) => {
      const r = kind === 'unary' ? await grpc.unary(method, body, HANG_MS) : await grpc.serverStream(method, body, HANG_MS)
      return r.code === Status.OK || assertRefusal(r)
    })
  })

  /** `text` as the body of a PUT, with `Connection: close`. */
  const put = (url: string, body: Uint8Array) =>
    Buffer.concat([Buffer.from(`PUT ${url} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`), body])
  const get = (url: string) => `GET ${url} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`
  const bodyOf = (raw: string) => Buffer.from(raw.slice(raw.indexOf('\r\n\r\n') + 4), 'latin1')
  const narName = (n: Uint8Array) => `nar/${nixbase32.encode(sha256(n))}.nar`
  let names = 0
  const freshName = () => `${nixbase32.encode(sha256(Buffer.from(`fuzz-${names}`)).subarray(0, 20))}-fuzz-${names++}`
  function narinfo(base: string, n: Uint8Array): string {
    const hash = `sha256:${nixbase32.encode(sha256(n))}`
    return `StorePath: /nix/store/${base}\nURL: ${narName(n)}\nCompression: none\nFileHash: ${hash}\nFileSize: ${n.length}\nNarHash: ${hash}\nNarSize: ${n.length}\nReferences: \n`
  }
  async function http(request: string | Buffer): Promise<{ status: number; raw: string }> {
    const r = await rawRequest(port, request)
    assert.ok(r.status !== undefined, `no answer, the connection closed: ${r.raw.slice(0, 200)}`)
    assert.ok(r.status < 500, `a ${r.status}: ${r.raw.slice(0, 300)}`)
    return { status: r.status, raw: r.raw }
  }
  /** The path `base` as served: its narinfo's NarHash and NarSize, and its NAR's bytes. */
  async function served(base: string): Promise<{ narinfo: string; nar: Buffer }> {
    const info = await http(get(`/${base.slice(0, 32)}.narinfo`))
    assert.equal(info.status, 200, info.raw)
    const url = /\nURL: (\S+)\n/.exec(info.raw)![1]!
    const n = await http(get(`/${url}`))
    assert.equal(n.status, 200)
    return { narinfo: info.raw, nar: bodyOf(n.raw) }
  }

  test('HTTP NAR uploads: a mutated NAR (named by its own hash) is refused with a 4xx, or published and served back byte for byte', async (t) => {
    const r0 = await fuzzLoop('PUT nar', SEED + 15, fuzzIterations(60), (m) => {
      const { bytes, ops } = m.mutate(seed.nar, 'nar')
      return { input: bytes, ops, shown: bytes.toString('hex') }
    }, async (n) => {
      const r = await http(put(`/${narName(n)}`, n))
      if (r.status !== 200) return assert.ok(r.status >= 400, r.raw) ?? false
      const base = freshName()
      const p = await http(put(`/${base.slice(0, 32)}.narinfo`, Buffer.from(narinfo(base, n))))
      assert.equal(p.status, 200, p.raw)
      assert.ok((await served(base)).nar.equals(n), 'an accepted NAR is served as other bytes')
      return true
    })
    t.diagnostic(`${r0.accepted} accepted`)
  })

  test('HTTP narinfo uploads: a mutated narinfo for an uploaded NAR is refused with a 4xx, or publishes the NAR\'s true hash and size', async (t) => {
    const victim = Buffer.from(seed.nar)
    const base = freshName()
    assert.equal((await http(put(`/${narName(victim)}`, victim))).status, 200)
    const good = narinfo(base, victim)
    const r0 = await fuzzLoop('PUT narinfo', SEED + 16, fuzzIterations(60), (m) => {
      const { bytes, ops } = m.mutate(Buffer.from(good), 'text')
      return { input: bytes, ops, shown: JSON.stringify(bytes.toString('latin1')) }
    }, async (text) => {
      const r = await http(put(`/${base.slice(0, 32)}.narinfo`, text))
      if (r.status !== 200) return assert.ok(r.status >= 400, r.raw) ?? false
      const s = await served(base)
      assert.match(s.narinfo, new RegExp(`\nNarHash: sha256:${nixbase32.encode(sha256(victim))}\n`))
      assert.match(s.narinfo, new RegExp(`\nNarSize: ${victim.length}\n`))
      assert.ok(s.nar.equals(victim), 'the NAR is served as other bytes')
      return true
    })
    t.diagnostic(`${r0.accepted} accepted`)
  })
})
