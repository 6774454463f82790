/**
 * export-nar of a file large enough to be read with the check thread
 * (a pack of ≥ 64 MiB, blob.ts SHARE_ABOVE), through the CLI: the NAR
 * byte for byte, and with one byte flipped in a chunk (the first, one in
 * the middle, the last), exit 1, one error line naming the corrupt chunk,
 * and on stdout the NAR's header and the blob's bytes before that chunk:
 * nothing of the bad chunk, nothing after it.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type ChunkRef, readManifest } from '../../src/backends/local/pack.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { randomBytes } from '../helpers/trees.js'
import { flipByte } from '../helpers/corrupt.js'

/** The NAR before a regular file's contents: magic, ( type regular contents, the size. */
const HEADER = 96

describe('export-nar of a large file, read with the check thread', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-export-large-'))
  const store = path.join(root, 'store')
  const file = path.join(root, 'big.bin')
  // Random bytes, so every chunk is stored raw, back to back from offset 0: pack offsets are blob offsets.
  const data = randomBytes((72 << 20) + 12345, 41)
  const hex = toHex(b3(data))
  const pack = path.join(store, 'blobs/b3', hex.slice(0, 2), `${hex}.pack`)
  let storePath: string
  let manifest: ChunkRef[]

  before(async () => {
    fs.writeFileSync(file, data)
    const r = await runCli(['import', '--store', store, file])
    assert.equal(r.code, 0, r.stderr)
    storePath = r.stdout.toString().trim()
    manifest = readManifest(pack, hex)!
    assert.ok(manifest.every((c) => c.codec === 0 && c.pack === hex), 'stored raw, in this pack')
    fs.chmodSync(pack, 0o644)
  })
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  const flip = (at: number) => flipByte(pack, at, 0x10)

  test('the NAR: its header, then the file', async () => {
    const r = await runCli(['export-nar', '--store', store, storePath])
    assert.equal(r.code, 0, r.stderr)
    // Then the contents' zero padding and the closing `)` token (u64 length, byte, padding).
    assert.equal(r.stdout.length, HEADER + data.length + ((8 - (data.length % 8)) % 8) + 16)
    assert.ok(r.stdout.subarray(HEADER, HEADER + data.length).equals(data))
  })

  test('a flipped byte in a chunk: the bytes before that chunk, then one error line naming it', async () => {
    const middle = manifest.find((c) => c.offset + c.size > data.length / 2)!
    for (const c of [manifest[0]!, middle, manifest.at(-1)!]) {
      flip(c.offset + (c.size >> 1))
      try {
        const r = await runCli(['export-nar', '--store', store, storePath])
        assert.equal(r.code, 1, `chunk at ${c.offset}: ${r.stderr}`)
        assertOneErrorLine(r.stderr, new RegExp(`chunk b3:${Buffer.from(c.digest).toString('base64').replace(/[+/]/g, '\\$&')} .* is corrupt`))
        // The header waits in the encoder for the first bytes of contents: with the first chunk bad, nothing is written.
        assert.equal(r.stdout.length, c.offset === 0 ? 0 : HEADER + c.offset, `chunk at ${c.offset}: the header and the bytes before it`)
        if (c.offset > 0) assert.ok(r.stdout.subarray(HEADER).equals(data.subarray(0, c.offset)))
      } finally {
        flip(c.offset + (c.size >> 1))
      }
    }
  })
})
