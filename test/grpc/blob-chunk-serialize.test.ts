import assert from 'node:assert/strict'
import { test } from 'node:test'
import { serviceDefinition } from '../../src/grpc/definitions.js'
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
