import assert from 'node:assert/strict'
import { test } from 'node:test'
import { BlobState, FRAMED_HEAD_MAX, framedPutBlobsLength, framePutBlobsRequests, frameReadBlobsResponse, putBlobsRequest, readBlobsResponse } from '../../src/grpc/batch-messages.js'
import { frameMessages } from '../../src/grpc/definitions.js'
import { randomBytes } from '../helpers/trees.js'

test("a ReadBlobs answer the daemon frames itself (frameReadBlobsResponse, then the data) is gRPC's framing of readBlobsResponse.encode", () => {
  // Indexes and sizes around the varint's byte boundaries, each state, several messages in one buffer.
  const cases: Array<[number, BlobState, number]> = [
    [0, BlobState.FOUND, 0],
    [0, BlobState.FOUND, 1],
    [1, BlobState.NOT_FOUND, 0],
    [127, BlobState.LARGER, 0],
    [128, BlobState.FOUND, 127],
    [1023, BlobState.FOUND, 128],
    [16383, BlobState.FOUND, 16383],
    [16384, BlobState.FOUND, 16384],
    [5, BlobState.FOUND, 1 << 20],
  ]
  const out = Buffer.alloc(cases.reduce((n, [, , size]) => n + FRAMED_HEAD_MAX + size, 0))
  const expected: Buffer[] = []
  let at = 0
  for (const [i, [index, state, size]] of cases.entries()) {
    const data = randomBytes(size, i + 1)
    at = frameReadBlobsResponse(out, at, index, state, size)
    out.set(data, at)
    at += size
    const message = Buffer.from(readBlobsResponse.encode({ index, state, data }))
    const prefix = Buffer.alloc(5)
    prefix.writeUInt32BE(message.length, 1)
    expected.push(prefix, message)
  }
  assert.ok(out.subarray(0, at).equals(Buffer.concat(expected)))
})

test('a ReadBlobsResponse decodes the same in any field order, with unknown fields skipped, and a cut-off one is refused', () => {
  const data = randomBytes(300, 7)
  const canonical = Buffer.from(readBlobsResponse.encode({ index: 300, state: BlobState.LARGER, data }))
  assert.deepEqual(readBlobsResponse.decode(canonical), { index: 300, state: BlobState.LARGER, data })
  // The same fields backwards (data, state, index), then an unknown varint field 9 and bytes field 10.
  const dataField = canonical.subarray(canonical.indexOf(0x1a))
  const reordered = Buffer.concat([dataField, Buffer.from([0x10, 0x02, 0x08, 0xac, 0x02, 0x48, 0x05, 0x52, 0x01, 0xff])])
  assert.deepEqual(readBlobsResponse.decode(reordered), { index: 300, state: BlobState.LARGER, data })
  assert.deepEqual(readBlobsResponse.decode(new Uint8Array(0)), { index: 0, state: BlobState.FOUND, data: new Uint8Array(0) })
  assert.throws(() => readBlobsResponse.decode(canonical.subarray(0, canonical.length - 1)), /malformed protobuf/)
  assert.throws(() => readBlobsResponse.decode(Buffer.from([0x08, 0x80])), /malformed protobuf/)
})

test('a PutBlobsRequest is encoded as the generic Writer encodes it, whatever the sizes', async () => {
  const { encode } = await import('../../src/proto/wire.js')
  for (const [i, n] of [0, 1, 127, 128, 4000, 16383, 16384, 1 << 20].entries()) {
    for (const digest of [randomBytes(32, 100 + i), new Uint8Array(0)]) {
      const data = randomBytes(n, i + 50)
      const generic = encode((w) => {
        w.bytes(1, digest)
        w.bytes(2, data)
      })
      assert.ok(Buffer.from(putBlobsRequest.encode({ digest, data })).equals(generic), `${n} bytes, digest of ${digest.length}`)
    }
  }
})

test("a PutBlobs batch the client frames itself (framePutBlobsRequests) is gRPC's framing of putBlobsRequest.encode, into a dirty reused buffer", () => {
  // Empty data (left out, as proto3 does), sizes around the varint's byte boundaries, a whole 1 MiB blob.
  const reqs = [0, 1, 127, 128, 16383, 16384, 1 << 20].map((size, i) => ({ digest: randomBytes(32, 100 + i), data: randomBytes(size, 200 + i) }))
  const expected = frameMessages(reqs.map((r) => putBlobsRequest.encode(r)))
  assert.equal(framedPutBlobsLength(reqs), expected.length)
  // A buffer with bytes of an earlier batch in it: every byte of the frame must be written.
  const out = Buffer.alloc(expected.length + 100, 0xa5)
  assert.equal(framePutBlobsRequests(out, reqs), expected.length)
  assert.ok(out.subarray(0, expected.length).equals(expected))
})
