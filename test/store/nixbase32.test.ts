import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { describe, test } from 'node:test'
import * as nixbase32 from '../../src/store/nixbase32.js'
import { nixMissing } from '../helpers/nix.js'
import { rng } from '../helpers/trees.js'

const hex = (s: string) => Buffer.from(s, 'hex')

describe('nixbase32', () => {
  // Vectors confirmed with `nix-hash --to-base32` (SPEC 4.1).
  const vectors: Array<[string, string]> = [
    ['1f', '0z'],
    ['8a12321522fd91efbd60ebb2481af88580f61600', '00bgd045z0d4icpbc2yyz4gx48ak44la'],
    [createHash('sha256').digest('hex'), '0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73'],
    [createHash('md5').digest('hex'), '3y8bwfr609h3lh9ch0izcqq7fl'],
    ['', ''],
  ]
  for (const [h, b32] of vectors) {
    test(`encodes and decodes ${h || '(empty)'}`, () => {
      assert.equal(nixbase32.encode(hex(h)), b32)
      assert.deepEqual(Buffer.from(nixbase32.decode(b32)), hex(h))
    })
  }

  test('encoded lengths', () => {
    for (const [n, len] of [[20, 32], [32, 52], [16, 26], [64, 103], [1, 2], [0, 0]]) assert.equal(nixbase32.encodedLen(n!), len)
  })

  test('rejects bad characters, lengths and high bits', () => {
    assert.throws(() => nixbase32.decode('0e'), /character/)
    assert.throws(() => nixbase32.decode('0u'), /character/)
    assert.throws(() => nixbase32.decode('000'), /length/)
    // A 52-char SHA-256 must start with 0 or 1: anything else sets bits past byte 32.
    assert.throws(() => nixbase32.decode('2mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73'), /bits/)
  })

  const why = nixMissing()
  test('agrees with nix-hash --to-base32 on random digests', { skip: why }, () => {
    const r = rng(32)
    const digests = Array.from({ length: 40 }, () => Buffer.from(Array.from({ length: 32 }, () => Math.floor(r() * 256))))
    const out = execFileSync('nix-hash', ['--type', 'sha256', '--to-base32', ...digests.map((d) => d.toString('hex'))]).toString().trim().split('\n')
    assert.deepEqual(digests.map((d) => nixbase32.encode(d)), out)
    for (const [i, s] of out.entries()) assert.deepEqual(Buffer.from(nixbase32.decode(s)), digests[i])
  })
  if (why) console.log(`skipping the nix-hash comparison: ${why}`)
})
