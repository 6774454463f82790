import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { describe, it } from 'node:test'
import { WRITABLE, compressor, decompressor } from '../../src/codecs/index.js'

const data = Buffer.concat([randomBytes(300_000), Buffer.alloc(300_000, 7)])
const through = (input: Buffer, step: NodeJS.ReadWriteStream) => buffer(Readable.from([input]).pipe(step))

describe('codecs', () => {
  for (const c of WRITABLE) {
    it(`${c}: what we compress decompresses to the same bytes`, async () => {
      const packed = await through(data, compressor(c))
      assert.deepEqual(await through(packed, decompressor(c)), data)
    })
  }

  it('goes by the bytes, not the label, as libarchive does: zstd data labelled xz decodes', async () => {
    const packed = await through(data, compressor('zstd'))
    assert.deepEqual(await through(packed, decompressor('xz')), data)
  })

  it('refuses a raw NAR labelled xz, and truncated xz, with the reason', async () => {
    await assert.rejects(through(data, decompressor('xz')), /labelled xz is not compressed data/)
    const packed = await through(data, compressor('xz'))
    await assert.rejects(through(packed.subarray(0, packed.length - 100), decompressor('xz')), /xz decompression failed/)
  })

  it('refuses an unknown label', () => {
    assert.throws(() => decompressor('rar'), /unknown compression "rar"/)
  })
})
