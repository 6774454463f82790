/**
 * The JavaScript BLAKE3 that short commands use for small inputs
 * (src/castore/blake3-js.ts) against the native binding (BLAKE3's own Rust
 * implementation) and the specification's published vectors.
 */
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { test } from 'node:test'
import { blake3Js } from '../../src/castore/blake3-js.js'
import { b3, b3Matches } from '../../src/castore/digest.js'
import { randomBytes } from '../helpers/trees.js'

const native = createRequire(import.meta.url)('@napi-rs/blake-hash') as { blake3(d: Buffer): Buffer }
const hex = (d: Uint8Array): string => Buffer.from(d).toString('hex')

test('the published test vectors (input i % 251, hash mode)', () => {
  // From BLAKE3's test_vectors.json, first 32 bytes of each hash.
  const vectors: Array<[number, string]> = [
    [0, 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262'],
    [1, '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213'],
    [1023, '10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11'],
    [1024, '42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7'],
    [1025, 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444'],
    [2048, 'e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a'],
    [3072, 'b98cb0ff3623be03326b373de6b9095218513e64f1ee2edd2525c7ad1e5cffd2'],
    [4096, '015094013f57a5277b59d8475c0501042c0b642e531b0a1c8f58d2163229e969'],
  ]
  for (const [len, want] of vectors) {
    const input = Buffer.from(Array.from({ length: len }, (_, i) => i % 251))
    assert.equal(hex(blake3Js(input)), want, `length ${len}`)
  }
})

test('equal to the native binding on every length up to 3 chunks, and on larger trees', () => {
  const lengths = [...Array.from({ length: 3 * 1024 + 2 }, (_, i) => i), 4095, 5120, 7 * 1024 + 1, 8192, 9000, 16 * 1024 + 3]
  const data = randomBytes(16 * 1024 + 3, 1403)
  for (const len of lengths) {
    const d = data.subarray(0, len)
    assert.equal(hex(blake3Js(d)), hex(native.blake3(d)), `length ${len}`)
  }
})

test('b3 gives the same digests before and after the native binding loads', () => {
  const inputs = [0, 5, 1024, 1025, 3000, 200, 64 * 1024].map((n, i) => randomBytes(n, i))
  for (const d of inputs) assert.equal(hex(b3(d)), hex(native.blake3(d)))
  for (const d of inputs) assert.equal(hex(b3(d)), hex(native.blake3(d)))
})

test('b3 and b3Matches share one native hasher: each starts from a fresh state, whatever the other hashed last', () => {
  const a = randomBytes(70_000, 1)
  const b = randomBytes(5_000, 2)
  // Past the JavaScript budget: the native hasher from here on.
  b3(randomBytes(8192, 3))
  const da = b3(a)
  assert.ok(b3Matches(b, native.blake3(b)))
  assert.equal(hex(b3(a)), hex(da))
  assert.ok(!b3Matches(b, da))
  assert.equal(hex(b3(b)), hex(native.blake3(b)))
})
