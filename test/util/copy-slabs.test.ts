import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CopySlabs } from '../../src/util/copy-slabs.js'

// Slabs of 8 KiB: each its own ArrayBuffer (smaller ones would share Node's buffer pool), so `.buffer` names the slab.
const SLAB = 8192
const half = (c: string) => Buffer.alloc(SLAB / 2, c)

test('copies are equal to their source and independent of it', () => {
  const slabs = new CopySlabs(SLAB, 2)
  const src = Buffer.from('abcdef')
  const c = slabs.copy(src)
  src.fill(0)
  assert.equal(c.bytes.toString(), 'abcdef')
})

test('a slab is filled again only once every copy in it is released', () => {
  const slabs = new CopySlabs(SLAB, 2)
  const a = slabs.copy(half('a'))
  const b = slabs.copy(half('b'))
  assert.equal(a.bytes.buffer, b.bytes.buffer, 'two copies that fit share a slab')
  a.release()
  // b is still live: the next copy goes to another slab, not over a's bytes.
  const c = slabs.copy(half('c'))
  assert.notEqual(c.bytes.buffer, b.bytes.buffer)
  assert.ok(b.bytes.equals(half('b')))
  b.release()
  b.release() // a second release changes nothing
  // The first slab went back to the pool: the slab after c's is it, filled again.
  slabs.copy(half('d'))
  const e = slabs.copy(half('e'))
  assert.equal(e.bytes.buffer, a.bytes.buffer)
  assert.ok(c.bytes.equals(half('c')))
})

test('the slab being filled starts again from its head once its copies are all released', () => {
  const slabs = new CopySlabs(SLAB, 2)
  const a = slabs.copy(half('a'))
  a.release()
  const b = slabs.copy(half('b'))
  assert.equal(b.bytes.buffer, a.bytes.buffer)
  assert.equal(b.bytes.byteOffset, a.bytes.byteOffset)
})

test('a copy larger than a slab gets a buffer of its own', () => {
  const slabs = new CopySlabs(SLAB, 2)
  const small = slabs.copy(half('x'))
  const big = slabs.copy(Buffer.alloc(SLAB + 1, 1))
  assert.notEqual(big.bytes.buffer, small.bytes.buffer)
  assert.equal(big.bytes.length, SLAB + 1)
  big.release()
  assert.equal(slabs.copy(half('y')).bytes.buffer, small.bytes.buffer)
})
