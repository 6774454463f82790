import assert from 'node:assert/strict'
import { test } from 'node:test'
import { BlobState, FRAMED_HEAD_MAX, frameReadBlobsResponse, readBlobsResponse } from '../../src/grpc/batch-messages.js'
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
