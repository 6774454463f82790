/**
 * A blob Put's data read straight off HTTP/2 (src/daemon/put-data.ts):
 * the parser on its own, fed every way a stream may be cut into DATA
 * pieces, and a daemon process taking Puts from a raw HTTP/2 client that
 * writes the gRPC frames in odd pieces, too large, cut short or malformed.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import http2 from 'node:http2'
import os from 'node:os'
import path from 'node:path'
import { gzipSync } from 'node:zlib'
import { after, before, describe, test } from 'node:test'
import { openStore } from '../../src/backends/open-store.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { putData } from '../../src/daemon/put-data.js'
import { MAX_MESSAGE_BYTES } from '../../src/grpc/definitions.js'
import { blobChunk } from '../../src/grpc/messages.js'
import { Status, StatusError } from '../../src/grpc/status.js'
import { InvalidInputError } from '../../src/errors.js'
import { eventually, field1, h2Session } from '../helpers/attack.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { snapshot, tempFiles } from '../helpers/snapshot.js'
import { randomBytes } from '../helpers/trees.js'

const MiB = 1 << 20

/** `msg` with gRPC's 5-byte prefix. */
function framed(msg: Uint8Array, length = msg.length): Buffer {
  const head = Buffer.alloc(5)
  head.writeUInt32BE(length, 1)
  return Buffer.concat([head, msg])
}

/** `bytes` cut at `cuts` (offsets), as HTTP/2 might hand them over. */
function cutAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set([0, ...cuts.filter((c) => c > 0 && c < bytes.length), bytes.length])].sort((a, b) => a - b)
  return at.slice(1).map((end, i) => bytes.subarray(at[i], end))
}

async function* from(pieces: Buffer[]): AsyncGenerator<Buffer> {
  yield* pieces
}

/** What putData yields, each piece copied as it comes (they share one buffer), and whether every piece but the last filled it. */
async function collect(pieces: AsyncIterable<Buffer>, out: Buffer): Promise<{ data: Buffer; fullUntilLast: boolean }> {
  const got: Buffer[] = []
  for await (const p of putData(pieces, out, MAX_MESSAGE_BYTES)) got.push(Buffer.from(p))
  return { data: Buffer.concat(got), fullUntilLast: got.slice(0, -1).every((p) => p.length === out.length) }
}

/** A BlobChunk of `data` with an unknown varint field 2 before it: not the plain form. */
const withUnknownField = (data: Uint8Array) => Buffer.concat([Buffer.from([0x10, 0x2a]), field1(data)])

describe('putData: BlobChunk data from raw DATA pieces', () => {
  const messages = [
    field1(randomBytes(3000, 1)),
    field1(randomBytes(1, 2)),
    Buffer.alloc(0), // an empty message: an empty BlobChunk
    Buffer.from([0x0a, 0x00]), // field 1 present, empty
    withUnknownField(randomBytes(700, 3)),
    Buffer.concat([field1(randomBytes(50, 4)), field1(randomBytes(90, 5))]), // field 1 twice: the last one counts
    Buffer.from([0x0a, 0x83, 0x00, 0x61, 0x62, 0x63]), // a length varint of more bytes than needed (3): as decode reads it
    field1(randomBytes(20_000, 6)),
  ]
  const stream = Buffer.concat(messages.map((m) => framed(m)))
  const want = Buffer.concat(messages.map((m) => blobChunk.decode(m)))

  test('every cut of the stream into two pieces, and into pieces of every size from 1 to 13 bytes, gives the data blobChunk.decode gives', async () => {
    for (let cut = 0; cut <= 200; cut++) {
      const r = await collect(from(cutAt(stream, [cut, stream.length - cut])), Buffer.alloc(4096))
      assert.ok(r.data.equals(want), `cut at ${cut}`)
      assert.ok(r.fullUntilLast, `cut at ${cut}: a piece before the last is not full`)
    }
    for (let size = 1; size <= 13; size++) {
      const cuts = Array.from({ length: Math.ceil(stream.length / size) }, (_, i) => i * size)
      const r = await collect(from(cutAt(stream, cuts)), Buffer.alloc(1000))
      assert.ok(r.data.equals(want), `pieces of ${size} bytes`)
    }
  })

  test('a message longer than the limit fails with RESOURCE_EXHAUSTED at its prefix: nothing after it is read', async () => {
    let askedAfter = false
    async function* claim(): AsyncGenerator<Buffer> {
      yield framed(field1(randomBytes(10, 7)))
      const head = Buffer.alloc(5)
      head.writeUInt32BE(0xffff_ffff, 1)
      yield head
      askedAfter = true
      yield Buffer.alloc(MiB)
    }
    await assert.rejects(collect(claim(), Buffer.alloc(4096)), (e: unknown) => e instanceof StatusError && e.code === Status.RESOURCE_EXHAUSTED && /larger than max \(4294967295 vs/.test(e.message))
    assert.equal(askedAfter, false)
  })

  test('a stream that ends inside a message (in its prefix, its protobuf head or its data) fails; one that ends between messages does not', async () => {
    const one = framed(field1(randomBytes(5000, 8)))
    for (const end of [1, 4, 5, 6, 7, 100, one.length - 1]) {
      await assert.rejects(collect(from([one, one.subarray(0, end)]), Buffer.alloc(4096)), (e: unknown) => e instanceof StatusError && e.code === Status.INVALID_ARGUMENT && /ended inside a message/.test(e.message), `ends at ${end}`)
    }
    assert.equal((await collect(from([one, one]), Buffer.alloc(4096))).data.length, 10_000)
  })

  test('malformed protobuf fails as blobChunk.decode fails (a length past the message: the cancelling client\'s last message)', async () => {
    for (const bad of [Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), Buffer.from([0x0a, 0x05, 0x01]), Buffer.from([0x0a]), Buffer.from([0x12, 0x01])]) {
      assert.throws(() => blobChunk.decode(bad), InvalidInputError)
      await assert.rejects(collect(from([framed(field1(randomBytes(10, 9))), framed(bad)]), Buffer.alloc(4096)), InvalidInputError, bad.toString('hex'))
    }
  })
})

/** A blob Put on a raw HTTP/2 stream: `pieces` written one by one (each after the last was taken), then the half-close unless `end` is false. */
function rawPut(session: http2.ClientHttp2Session, pieces: Buffer[], end = true, headers: http2.OutgoingHttpHeaders = {}): Promise<{ status: number; details: string; body: Buffer }> {
  return new Promise((resolve) => {
    const stream = session.request({ ':method': 'POST', ':path': '/tvix.castore.v1.BlobService/Put', 'content-type': 'application/grpc', te: 'trailers', ...headers })
    const got: Buffer[] = []
    let status = NaN
    let details = ''
    const heard = (h: http2.IncomingHttpHeaders) => {
      if (h['grpc-status'] !== undefined) status = Number(h['grpc-status'])
      if (h['grpc-message'] !== undefined) details = decodeURIComponent(String(h['grpc-message']))
    }
    stream.on('response', heard)
    stream.on('trailers', heard)
    stream.on('data', (c: Buffer) => got.push(c))
    stream.on('error', () => {})
    stream.on('close', () => resolve({ status, details, body: Buffer.concat(got) }))
    void (async () => {
      for (const p of pieces) {
        if (stream.destroyed || stream.writableEnded) return
        await new Promise<void>((done) => stream.write(p, () => done()))
      }
      if (end && !stream.destroyed) stream.end()
      else if (!end && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL)
    })()
  })
}

describe('a daemon taking blob Puts off raw HTTP/2', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-put-data-'))
  const store = path.join(root, 'store')
  let daemon: RunningDaemon
  let session: http2.ClientHttp2Session
  const objects = () => snapshot(store).filter((f) => !f.startsWith('tmp/') && !f.startsWith('locks/'))

  before(async () => {
    daemon = await startDaemon(store, '127.0.0.1:0')
    session = h2Session(daemon.url)
  })
  after(async () => {
    session?.close()
    await daemon?.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  /** Stored objects as they were and no temp files left, once the daemon has cleaned up. */
  async function unchanged(before: string[]): Promise<void> {
    for (let i = 0; i < 100 && tempFiles(store).length > 0; i++) await new Promise((r) => setTimeout(r, 50))
    assert.deepEqual(tempFiles(store), [])
    assert.deepEqual(objects(), before)
  }

  test('3 MiB in messages of 1 MiB + 1 KiB whose gRPC and protobuf heads are cut across DATA pieces, one of them not the plain form: the digest of the bytes sent, and the bytes read back', async () => {
    const data = randomBytes(3 * MiB, 21)
    const step = MiB + 1024
    const msgs: Buffer[] = []
    for (let i = 0; i < data.length; i += step) msgs.push(framed(i === step ? withUnknownField(data.subarray(i, i + step)) : field1(data.subarray(i, i + step))))
    const whole = Buffer.concat(msgs)
    // Cuts 1-7 bytes into each message (its prefix and protobuf head) and at odd places inside.
    const cuts: number[] = []
    for (let at = 0, i = 0; i < msgs.length; at += msgs[i]!.length, i++) cuts.push(at + 1 + i, at + 3 + i, at + 6, at + 7, at + 65_537 + i)
    const r = await rawPut(session, cutAt(whole, cuts))
    assert.equal(r.status, Status.OK, r.details)
    // PutBlobResponse: field 1, the digest.
    assert.equal(toHex(blobChunk.decode(r.body.subarray(5))), toHex(b3(data)))
    await readBack(data)
  })

  /** The blob `data` read back through the daemon (which commits its put window first). */
  async function readBack(data: Uint8Array): Promise<void> {
    const client = await openStore({ url: daemon.url })
    try {
      const read: Uint8Array[] = []
      for await (const c of (await client.blobs.open(b3(data)))!) read.push(Buffer.from(c))
      assert.ok(Buffer.concat(read).equals(data))
    } finally {
      await client.close()
    }
  }

  test('a small blob cut into pieces goes through the put window whole', async () => {
    const data = randomBytes(5000, 22)
    const r = await rawPut(session, cutAt(framed(field1(data)), [1, 2, 3, 4, 5, 6, 7, 100]))
    assert.equal(r.status, Status.OK, r.details)
    assert.equal(toHex(blobChunk.decode(r.body.subarray(5))), toHex(b3(data)))
    await readBack(data)
  })

  test('a compressed Put (grpc-encoding: gzip) is left to grpc-js, which inflates it: the digest of the bytes inflated', async () => {
    const data = randomBytes(3 * MiB, 28)
    const gz = gzipSync(field1(data))
    const prefix = Buffer.alloc(5)
    prefix[0] = 1
    prefix.writeUInt32BE(gz.length, 1)
    const r = await rawPut(session, [prefix, gz], true, { 'grpc-encoding': 'gzip' })
    assert.equal(r.status, Status.OK, r.details)
    assert.equal(toHex(blobChunk.decode(r.body.subarray(5))), toHex(b3(data)))
    await readBack(data)
  })

  test('a message that claims 4 GiB: RESOURCE_EXHAUSTED, nothing stored', async () => {
    const stored = objects()
    const head = Buffer.alloc(5)
    head.writeUInt32BE(0xffff_ffff, 1)
    const r = await rawPut(session, [framed(field1(randomBytes(2 * MiB, 23))), head, Buffer.alloc(MiB)])
    assert.equal(r.status, Status.RESOURCE_EXHAUSTED, r.details)
    assert.match(r.details, /larger than max/)
    await unchanged(stored)
  })

  test('a stream that ends inside a message (grpc-js would drop the cut-off message and store the rest): INVALID_ARGUMENT, nothing stored', async () => {
    const stored = objects()
    const second = framed(field1(randomBytes(MiB, 25)))
    const r = await rawPut(session, [framed(field1(randomBytes(2 * MiB, 24))), second.subarray(0, 300_000)])
    assert.equal(r.status, Status.INVALID_ARGUMENT, r.details)
    assert.match(r.details, /ended inside a message/)
    await unchanged(stored)
    assert.ok(await eventually(() => /Put failed: INVALID_ARGUMENT: the stream ended inside a message/.test(daemon.log())))
  })

  test('a malformed BlobChunk after 2 MiB (the message a cancelling client sends last): INVALID_ARGUMENT, nothing stored', async () => {
    const stored = objects()
    const r = await rawPut(session, [framed(field1(randomBytes(2 * MiB, 26))), framed(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]))])
    assert.equal(r.status, Status.INVALID_ARGUMENT, r.details)
    await unchanged(stored)
    // Logged (a client's error, not a cancel); waited for, so that the next test's log starts after it.
    assert.ok(await eventually(() => /Put failed: INVALID_ARGUMENT: malformed protobuf/.test(daemon.log())))
  })

  test('a Put reset by its client after 2 MiB: nothing stored, and the daemon logs no failure', async () => {
    const stored = objects()
    const logged = daemon.log().length
    await rawPut(session, [framed(field1(randomBytes(2 * MiB, 27)))], false)
    await unchanged(stored)
    assert.doesNotMatch(daemon.log().slice(logged), /Put failed/)
  })
})
