/**
 * A bundle's index as BundleWriter.finish writes it: every entry in digest
 * order, the fanout right, every member found, whatever the digests (spread
 * as BLAKE3 spreads them, or many sharing a first byte, as digests ground on
 * purpose could).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { BundleWriter, readBundleIndex } from '../../src/backends/local/bundle.js'
import { rng } from '../helpers/trees.js'

let tmp: string
before(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bundle-index-'))))
after(() => fs.rmSync(tmp, { recursive: true, force: true }))

/** `count` seeded 32-byte digests; `firstByte(i)` fixes the first byte of some. */
function digests(count: number, seed: number, firstByte: (i: number) => number | undefined): Buffer[] {
  const r = rng(seed)
  return Array.from({ length: count }, (_, i) => {
    const d = Buffer.from(Array.from({ length: 32 }, () => Math.floor(r() * 256)))
    const f = firstByte(i)
    if (f !== undefined) d[0] = f
    return d
  })
}

function roundTrip(name: string, ds: Buffer[]): void {
  const file = path.join(tmp, `${name}.bundle`)
  const w = BundleWriter.create(file)
  ds.forEach((d, i) => w.add(d, Buffer.from(`member ${i}`)))
  w.finish()
  const index = readBundleIndex(file, name)!
  const listed = [...index.members()].map((m) => m.hex)
  assert.deepEqual(listed, ds.map((d) => d.toString('hex')).sort(), 'the index lists every digest once, in order')
  let offset = 0
  ds.forEach((d, i) => {
    const size = `member ${i}`.length
    assert.deepEqual(index.find(d), { offset, size }, `member ${i} is found where it was written`)
    offset += size
  })
  const absent = Buffer.from(ds[0]!)
  absent[16]! ^= 1
  assert.equal(index.find(absent), undefined)
}

test('2,000 spread digests: sorted, all found', () => roundTrip('spread', digests(2000, 1, () => undefined)))

test('buckets of 0, 1, a few and hundreds of entries, first bytes 0x00 and 0xff among them: sorted, all found', () =>
  roundTrip('skewed', digests(1500, 2, (i) => (i % 3 === 0 ? 0x7f : i % 7 === 0 ? 0x00 : i % 11 === 0 ? 0xff : undefined))))

test('one member, and members whose digests differ only in the last byte', () => {
  roundTrip('one', digests(1, 3, () => undefined))
  const base = digests(1, 4, () => 0x10)[0]!
  roundTrip('close', [5, 3, 200, 0, 17, 4, 1, 250, 2, 9, 100, 6, 7, 8, 10, 11, 12, 13, 14].map((last) => Buffer.concat([base.subarray(0, 31), Buffer.of(last)])))
})
