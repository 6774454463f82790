/**
 * The table from a digest's first 8 bytes to the lists (bundle indexes)
 * that may hold it (src/backends/local/digest-table.ts): every key found
 * in its own list, misses answered without a call, a digest in two lists
 * offered to both, and growth past the first capacity.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, test } from 'node:test'
import { DigestTable } from '../../src/backends/local/digest-table.js'

const STRIDE = 44

/** `count` random 32-byte digests laid out as a bundle index lays its entries (STRIDE bytes apart). */
function entries(count: number): Buffer {
  return randomBytes(count * STRIDE)
}
const digestAt = (b: Buffer, i: number) => b.subarray(i * STRIDE, i * STRIDE + 32)

describe('DigestTable', () => {
  test('each digest of 300 lists is found in its own list; others are not', () => {
    const table = new DigestTable()
    const lists = Array.from({ length: 300 }, () => entries(40))
    lists.forEach((b, n) => table.addAll(b, 0, STRIDE, 40, n))
    assert.equal(table.size, 12_000)
    for (let n = 0; n < 300; n += 7) {
      for (let i = 0; i < 40; i += 3) {
        const asked: number[] = []
        const got = table.find(digestAt(lists[n]!, i), (list) => (asked.push(list), list === n ? list : undefined))
        assert.equal(got, n)
        assert.deepEqual(asked, [n], 'no other list shares 8 random bytes')
      }
    }
    let calls = 0
    for (let i = 0; i < 1000; i++) assert.equal(table.find(randomBytes(32), () => ++calls), undefined)
    assert.equal(calls, 0)
  })

  test('a digest in two lists is offered to each until one answers', () => {
    const table = new DigestTable()
    const shared = entries(1)
    table.addAll(shared, 0, STRIDE, 1, 4)
    table.addAll(shared, 0, STRIDE, 1, 9)
    const asked: number[] = []
    assert.equal(table.find(digestAt(shared, 0), (list) => void asked.push(list)), undefined)
    assert.deepEqual(asked.sort(), [4, 9])
    assert.equal(table.find(digestAt(shared, 0), (list) => (list === 9 ? 'nine' : undefined)), 'nine')
  })

  test('keys added one list at a time grow the table; clear() forgets them all', () => {
    const table = new DigestTable()
    const big = entries(5000)
    for (let n = 0; n < 50; n++) table.addAll(big, n * 100 * STRIDE, STRIDE, 100, n)
    for (let i = 0; i < 5000; i += 11) assert.equal(table.find(digestAt(big, i), (list) => list), Math.floor(i / 100))
    table.clear()
    assert.equal(table.size, 0)
    assert.equal(table.find(digestAt(big, 0), (list) => list), undefined)
  })
})
