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

  /**
   * A singular sub-message sent twice was replaced by the second, where
   * protobuf merges the two (repeated fields appended): a PathInfo whose
   * narinfo came twice was read with one narinfo's signatures and
   * reference names, where tvix reads both and refuses the mismatch.
   * Found by the PathInfo fuzzer ("duplicate the field at 124 to 0").
   */
  test('a PathInfo, a Node member and a CA sent twice merge as protobuf merges them', () => {
    const info = {
      node: FILE_NODE,
      references: [Buffer.alloc(20, 1)],
      narinfo: { narSize: 9, narSha256: Buffer.alloc(32, 2), signatures: [{ name: 'k', data: Buffer.alloc(64, 3) }], referenceNames: [`${'0'.repeat(32)}-a`], ca: { type: 1, digest: Buffer.alloc(32, 5) } },
    }
    const bytes = Buffer.from(encodePathInfo(info))
    // Field 3 (narinfo) once more, with only a size: merged, the signature and reference name stay and the size is the new one.
    const again = Buffer.concat([bytes, hex('1a 02 0807')])
    const read = decodePathInfo(again)
    assert.equal(read.narinfo!.narSize, 7)
    assert.equal(read.narinfo!.signatures.length, 1)
    assert.deepEqual(read.narinfo!.referenceNames, [`${'0'.repeat(32)}-a`])
    assert.equal(read.narinfo!.ca?.type, 1)
    // The whole narinfo twice: its repeated fields twice over, as prost reads them.
    const twice = decodePathInfo(Buffer.concat([bytes, bytes.subarray(bytes.indexOf(0x1a, 2))]))
    assert.equal(twice.narinfo!.signatures.length, 2)
    assert.equal(twice.narinfo!.referenceNames.length, 2)
    // A Node's file member twice, the second with only a size: one file, that size, the first's digest.
    const node = decodeNode(Buffer.concat([encodeNode(FILE_NODE), hex('12 02 1805')]))
    assert.equal(node.kind, 'file')
    assert.equal(node.kind === 'file' && node.size, 5)
    assert.deepEqual(node.kind === 'file' && Buffer.from(node.digest), Buffer.alloc(32, 1))
    // Another member replaces: a symlink after the file.
    assert.equal(decodeNode(Buffer.concat([encodeNode(FILE_NODE), hex('1a 03 0a0162')])).kind, 'symlink')
  })

  /**
   * A member replaced by another was never read, so a malformed one passed;
   * and merging must not let one part complete another that is cut short.
   * Found by the Node fuzzer ("insert field 3 of wire type 2 at 0").
   */
  test('a malformed Node member that another replaces, or a narinfo part cut short that the next would complete: refused', () => {
    // symlink member "abc": 0x61 is field 12 as fixed64, with 2 of its 8 bytes.
    const replaced = Buffer.concat([hex('1a 03 616263'), encodeNode(FILE_NODE)])
    assert.throws(() => decodeNode(replaced), (e: Error) => e instanceof InvalidInputError && /truncated fixed-width field/.test(e.message))
    // narinfo `12 04 aabb` (nar_sha256 says 4 bytes, has 2), then narinfo `ccdd`: joined they would read as one 4-byte hash.
    const cut = Buffer.concat([encodePathInfo({ node: FILE_NODE, references: [] }), hex('1a 04 1204aabb'), hex('1a 02 ccdd')])
    assert.throws(() => decodePathInfo(cut), (e: Error) => e instanceof InvalidInputError && /truncated length-delimited field/.test(e.message))
  })

  test('an unknown field of a fixed-width wire type is still skipped, as protobuf wants', () => {
    const dir = encodeDirectory({ directories: [], files: [FILE_NODE], symlinks: [] })
    const withUnknown = Buffer.concat([dir, hex('49 0102030405060708 4d 01020304')])
    assert.deepEqual(Buffer.from(encodeDirectory(decodeDirectory(withUnknown))), Buffer.from(dir))
  })
})
