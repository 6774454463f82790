import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
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

  it('lzip through an xz older than 5.4 (no lzip support): the error names what is missing', async () => {
    // xz 5.2's own words for a --format it lacks.
    const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'old-xz-'))
    fs.writeFileSync(path.join(bin, 'xz'), '#!/bin/sh\ncat >/dev/null\necho "xz: lzip: Unknown file format type" >&2\nexit 1\n', { mode: 0o755 })
    const PATH = process.env.PATH
    process.env.PATH = `${bin}:${PATH}`
    try {
      const lzipHead = Buffer.concat([Buffer.from('LZIP\x01\x0c'), data.subarray(0, 1000)])
      await assert.rejects(through(lzipHead, decompressor('lzip')), /^InvalidInputError: lzip decompression failed: this xz cannot read lzip \(xz 5\.4 or newer can\): xz: lzip: Unknown file format type$/)
    } finally {
      process.env.PATH = PATH
      fs.rmSync(bin, { recursive: true, force: true })
    }
  })

  it('refuses an unknown label', () => {
    assert.throws(() => decompressor('rar'), /unknown compression "rar"/)
  })
})
