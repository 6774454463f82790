/**
 * A ReadBlobs batch answer read where it lies in the DATA pieces
 * (MessageReader + readBlobsResponseAt): the same blobs however HTTP/2 cut
 * the answer, and a broken answer fails before any byte of the blob it
 * breaks is handed out. The server is bare node:http2 writing each piece
 * on its own, so the cuts are the test's, not a daemon's.
 */
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { GrpcBlobService } from '../../src/backends/grpc/blob.js'
import { RpcClient } from '../../src/backends/grpc/rpc.js'
import { LARGER, type WholeRead } from '../../src/castore/read-ahead.js'
import { b3 } from '../../src/castore/digest.js'
import { BlobState, readBlobsResponse, type ReadBlobsResponse } from '../../src/grpc/batch-messages.js'
import { randomBytes } from '../helpers/trees.js'

const blobs = [randomBytes(5, 1), randomBytes(300, 2), randomBytes(40, 3), randomBytes(200, 4)]
const items = blobs.map((b) => ({ digest: b3(b), maxBytes: b.length }))

/** An answer's messages, framed as gRPC frames them (flag byte, 4-byte length, message). */
function framed(messages: ReadBlobsResponse[]): Buffer {
  return Buffer.concat(messages.flatMap((m) => {
    const msg = Buffer.from(readBlobsResponse.encode(m))
    const head = Buffer.alloc(5)
    head.writeUInt32BE(msg.length, 1)
    return [head, msg]
  }))
}

/** Blob 0 found, blob 1 found, blob 2 absent, blob 3 larger than asked for (its data sent anyway, as a daemon may). */
const ANSWER: ReadBlobsResponse[] = [
  { index: 0, state: BlobState.FOUND, data: blobs[0]! },
  { index: 1, state: BlobState.FOUND, data: blobs[1]! },
  { index: 2, state: BlobState.NOT_FOUND, data: new Uint8Array(0) },
  { index: 3, state: BlobState.LARGER, data: new Uint8Array(0) },
]
const EXPECTED: string[] = [blobs[0]!.toString('hex'), blobs[1]!.toString('hex'), 'absent', 'larger']

const show = (r: WholeRead): string => (r === undefined ? 'absent' : r === LARGER ? 'larger' : Buffer.from(r).toString('hex'))

describe('ReadBlobs answers read from the DATA pieces', () => {
  let server: http2.Http2Server
  let rpc: RpcClient
  let blobService: GrpcBlobService
  /** The pieces the server writes next, each a write (and a DATA frame) of its own, then an OK status. */
  let pieces: Buffer[] = []

  before(async () => {
    server = http2.createServer()
    server.on('stream', (stream) => {
      stream.on('error', () => {})
      stream.resume()
      stream.on('end', async () => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
        for (const p of pieces) {
          await new Promise<void>((resolve) => stream.write(p, () => resolve()))
          await new Promise((resolve) => setImmediate(resolve))
        }
        stream.end()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    rpc = new RpcClient(`127.0.0.1:${(server.address() as AddressInfo).port}`, 'test')
    blobService = new GrpcBlobService(rpc)
  })
  after(async () => {
    rpc.close()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  /** The blobs readMany handed out, in order, and how it ended. */
  async function read(): Promise<{ got: string[]; error?: Error }> {
    const got: string[] = []
    try {
      await blobService.readMany(items, (i, r) => {
        assert.equal(i, got.length)
        got.push(show(r))
      })
      return { got }
    } catch (e) {
      return { got, error: e as Error }
    }
  }

  test('the same blobs wherever the answer is cut, into two pieces or into single bytes', async () => {
    const wire = framed(ANSWER)
    const cuts: Buffer[][] = []
    for (let at = 1; at < wire.length; at++) cuts.push([wire.subarray(0, at), wire.subarray(at)])
    cuts.push([...wire].map((byte) => Buffer.from([byte])))
    for (const cut of cuts) {
      pieces = cut
      const { got, error } = await read()
      assert.equal(error, undefined, `cut at ${cut[0]!.length}: ${error?.message}`)
      assert.deepEqual(got, EXPECTED, `cut at ${cut[0]!.length}`)
    }
  })

  test('an answer cut off inside a blob fails, and that blob is not handed out', async () => {
    const wire = framed(ANSWER.slice(0, 2))
    // Cut inside blob 1's message (at several places, in one piece and in two).
    for (const end of [wire.length - 1, wire.length - 150, framed(ANSWER.slice(0, 1)).length + 3]) {
      pieces = [wire.subarray(0, 10), wire.subarray(10, end)]
      const { got, error } = await read()
      assert.deepEqual(got, EXPECTED.slice(0, 1), `cut at ${end}`)
      assert.match(String(error?.message), /ended inside a message/)
    }
    // Whole messages, but fewer than asked for.
    pieces = [wire]
    const { got, error } = await read()
    assert.deepEqual(got, EXPECTED.slice(0, 2))
    assert.match(String(error?.message), /left out blob/)
  })

  test('a blob whose bytes do not match its digest fails the batch before any of its bytes are handed out', async () => {
    const bad = Buffer.from(blobs[1]!)
    bad[bad.length - 1]! ^= 1
    const wire = framed([ANSWER[0]!, { index: 1, state: BlobState.FOUND, data: bad }, ...ANSWER.slice(2)])
    for (const cut of [[wire], [wire.subarray(0, 20), wire.subarray(20)]]) {
      pieces = cut
      const { got, error } = await read()
      assert.deepEqual(got, EXPECTED.slice(0, 1))
      assert.match(String(error?.message), /corrupt: its contents do not match its digest/)
    }
  })

  test('blobs answered out of order, or a message that is no ReadBlobsResponse, fail the batch', async () => {
    pieces = [framed([ANSWER[1]!, ANSWER[0]!])]
    let { got, error } = await read()
    assert.deepEqual(got, [])
    assert.match(String(error?.message), /answered blob 1 of a batch where blob 0 was due/)
    // Field 3 with a length past the message's end.
    pieces = [framed([ANSWER[0]!]), Buffer.from([0, 0, 0, 0, 4, 0x08, 0x01, 0x1a, 0x09])]
    ;({ got, error } = await read())
    assert.deepEqual(got, EXPECTED.slice(0, 1))
    assert.match(String(error?.message), /malformed protobuf/)
  })
})
