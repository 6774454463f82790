import assert from 'node:assert/strict'
import { test } from 'node:test'
import { blobChunkFrameHead, serviceDefinition } from '../../src/grpc/definitions.js'
import { blobChunk } from '../../src/grpc/messages.js'
import { randomBytes } from '../helpers/trees.js'

test("the daemon's blob Read serializer (one reused buffer) writes what blobChunk.encode writes, whatever came before", () => {
  const serialize = serviceDefinition('tvix.castore.v1.BlobService', 'server').Read!.responseSerialize
  // Lengths around the varint's byte boundaries, and past the scratch buffer's first size.
  for (const [i, n] of [0, 1, 127, 128, 16383, 16384, 256 << 10, 1 << 20, (1 << 20) + 7, 3000].entries()) {
    const data = randomBytes(n, i + 1)
    const got = Buffer.from(serialize(data))
    assert.ok(got.equals(Buffer.from(blobChunk.encode(data))), `${n} bytes`)
    assert.ok(Buffer.from(blobChunk.decode(got)).equals(data))
  }
})

test("a Read message the daemon writes itself (blobChunkFrameHead, then the data) is grpc-js's framing of the serializer's bytes", () => {
  const serialize = serviceDefinition('tvix.castore.v1.BlobService', 'server').Read!.responseSerialize
  for (const [i, n] of [0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 1 << 20].entries()) {
    const data = randomBytes(n, i + 20)
    const message = Buffer.from(serialize(data))
    const prefix = Buffer.alloc(5)
    prefix.writeUInt32BE(message.length, 1)
    assert.ok(Buffer.concat([blobChunkFrameHead(n), data]).equals(Buffer.concat([prefix, message])), `${n} bytes`)
  }
})
