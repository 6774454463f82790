import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { create, toBinary } from '@bufbuild/protobuf'
import * as pb from '../../src/proto/gen/tvix/castore/protos/castore_pb.js'
import { decodeDirectory, encodeDirectory } from '../../src/castore/proto.js'
import { rng } from '../helpers/trees.js'

describe('sub-messages written in place (Writer.message) agree with the generated code', () => {
  const r = rng(13)
  const bytes = (min: number, max: number) => Buffer.from(Array.from({ length: min + Math.floor(r() * (max - min)) }, () => Math.floor(r() * 256)))

  test('entries whose length takes 1, 2 or 3 varint bytes, in Directories that outgrow the first buffer mid-entry', () => {
    for (let i = 0; i < 60; i++) {
      const msg = create(pb.DirectorySchema, {
        directories: Array.from({ length: Math.floor(r() * 4) }, () => ({ name: bytes(1, 255), digest: bytes(32, 33), size: BigInt(Math.floor(r() * 2 ** 40)) })),
        files: Array.from({ length: Math.floor(r() * 40) }, () => ({ name: bytes(1, 255), digest: bytes(32, 33), size: BigInt(Math.floor(r() * 300)), executable: r() < 0.5 })),
        // Targets up to 20,000 bytes: entry lengths past 16,383 take three varint bytes.
        symlinks: Array.from({ length: Math.floor(r() * 3) }, () => ({ name: bytes(1, 255), target: bytes(1, r() < 0.5 ? 120 : 20_000) })),
      })
      const ref = toBinary(pb.DirectorySchema, msg)
      assert.ok(Buffer.from(encodeDirectory(decodeDirectory(ref))).equals(Buffer.from(ref)), `message ${i}`)
    }
  })
})
