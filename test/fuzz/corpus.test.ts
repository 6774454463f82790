/**
 * What the seeded fuzzers (decoders.test.ts, daemon.test.ts) found, each
 * kept as a named case so that it stays fixed whatever seed CI runs with.
 * Each case is the smallest input that showed the fault, with the fault it
 * showed.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { decodeDirectory, decodeNode, encodeDirectory, encodeNode } from '../../src/castore/proto.js'
import { InvalidInputError } from '../../src/errors.js'
import { statBlobRequest } from '../../src/grpc/messages.js'
import { decodePathInfo, encodePathInfo } from '../../src/store/proto.js'

const hex = (h: string) => Buffer.from(h.replace(/\s+/g, ''), 'hex')
const FILE_NODE = { kind: 'file' as const, name: Buffer.from('a'), digest: Buffer.alloc(32, 1), size: 3, executable: false }

describe('fuzz corpus: protobuf', () => {
  /**
   * A known field sent with a fixed-width wire type (1: 8 bytes, 5: 4
   * bytes) was skipped as if unknown, so the message was accepted without
   * it; prost (tvix) and the generated code refuse it. Found by the
   * Directory, PathInfo, Node and StatBlobRequest fuzzers alike.
   */
  const fixedWidth: Array<[string, Buffer, (b: Buffer) => unknown]> = [
    ['a Directory whose field 1 (directories) comes as fixed64', Buffer.concat([hex('09 0102030405060708'), encodeDirectory({ directories: [], files: [FILE_NODE], symlinks: [] })]), decodeDirectory],
    ['a Node whose field 2 (file) comes as fixed32 after a valid one', Buffer.concat([encodeNode({ ...FILE_NODE, name: new Uint8Array(0) }), hex('15 507fe548')]), decodeNode],
    ['a PathInfo whose field 1 (node) comes as fixed32 first', Buffer.concat([hex('0d bd6947a2'), encodePathInfo({ node: FILE_NODE, references: [] })]), decodePathInfo],
    ['a StatBlobRequest whose field 1 (digest) comes again as fixed32', Buffer.concat([statBlobRequest.encode({ digest: Buffer.alloc(32, 7), sendChunks: true, sendBao: false }), hex('0d ed3aafdf')]), statBlobRequest.decode],
  ]
  for (const [name, bytes, decode] of fixedWidth) {
    test(`${name}: refused, naming the wire type`, () => {
      assert.throws(() => decode(bytes), (e: Error) => e instanceof InvalidInputError && /wire type [15], want [02]/.test(e.message))
    })
  }

  /**
   * A tag above 2^32 (a field number beyond protobuf's 2^29 - 1) was read
   * as an unknown field and skipped; prost and the generated code refuse
   * it. Found by the PathInfo fuzzer: 14 random bytes in front of a PathInfo.
   */
  test('a PathInfo behind a tag that overflows 32 bits (field 2^32 / 8, fixed64): refused', () => {
    const bytes = Buffer.concat([hex('f19480ee8571 3084289a9fa81cd5'), encodePathInfo({ node: FILE_NODE, references: [] })])
    assert.throws(() => decodePathInfo(bytes), (e: Error) => e instanceof InvalidInputError && /malformed PathInfo message: field tag too large/.test(e.message))
  })

  test('an unknown field of a fixed-width wire type is still skipped, as protobuf wants', () => {
    const dir = encodeDirectory({ directories: [], files: [FILE_NODE], symlinks: [] })
    const withUnknown = Buffer.concat([dir, hex('49 0102030405060708 4d 01020304')])
    assert.deepEqual(Buffer.from(encodeDirectory(decodeDirectory(withUnknown))), Buffer.from(dir))
  })
})
