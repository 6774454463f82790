/**
 * readPackedBlob with the check thread ('shared'): the blob's bytes as
 * they are, and with one byte of any chunk flipped, exactly the chunks
 * before it and then the error, whichever thread checked the bad chunk.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { openLocalStore } from '../../src/backends/local/index.js'
import { type ChunkRef, readManifest, readPackedBlob } from '../../src/backends/local/pack.js'
import { SHARED_SPAN, leaseCheckBuffer } from '../../src/castore/check-thread.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { IntegrityError } from '../../src/errors.js'
import { randomBytes } from '../helpers/trees.js'
import { flipByte } from '../helpers/corrupt.js'

describe('a packed blob read with the check thread', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-pack-shared-'))
  // Random bytes: every chunk stored raw, back to back from offset 0, so pack offsets are blob offsets.
  // A span and a half: a span boundary inside the blob.
  const data = randomBytes(SHARED_SPAN + (SHARED_SPAN >> 1), 77)
  const hex = toHex(b3(data))
  const file = path.join(root, 'blobs/b3', hex.slice(0, 2), `${hex}.pack`)
  let manifest: ChunkRef[]

  before(async () => {
    const store = await openLocalStore(root)
    await store.blobs.put(data)
    await store.close()
    manifest = readManifest(file, hex)!
    assert.ok(manifest.every((c) => c.codec === 0 && c.pack === hex), 'stored raw, in this pack')
    fs.chmodSync(file, 0o644)
    // Until the thread has started, spans are checked on the main thread alone.
    const lease = leaseCheckBuffer()!
    const fd = fs.openSync(file, 'r')
    try {
      // The chunks of the first span: the worker takes those from the middle on.
      const first: ChunkRef[] = []
      let len = 0
      for (const c of manifest) {
        if (len + c.size > SHARED_SPAN) break
        first.push(c)
        len += c.size
      }
      const read = () => lease.readChecked(fd, 0, len, first, (into, pos) => fs.readSync(fd, into, 0, into.length, pos))
      for (let i = 0; i < 200 && !read().shared; i++) await sleep(50)
      assert.ok(read().shared, 'the check thread took part')
    } finally {
      fs.closeSync(fd)
      lease.release()
    }
  })
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  /** What a lent, shared read gives before it ends or fails: the bytes (copied, the buffer is reused) and the error. */
  function readShared(): { out: Buffer; error?: unknown } {
    const pieces: Buffer[] = []
    try {
      for (const p of readPackedBlob(() => file, manifest, 256 << 10, 'shared')) pieces.push(Buffer.from(p))
    } catch (error) {
      return { out: Buffer.concat(pieces), error }
    }
    return { out: Buffer.concat(pieces) }
  }

  const flip = (at: number) => flipByte(file, at, 0x40)

  test('the bytes of the blob', () => {
    const { out, error } = readShared()
    assert.equal(error, undefined)
    assert.ok(out.equals(data))
  })

  test('a flipped byte in any chunk: the chunks before it, then an IntegrityError naming it', () => {
    for (const c of manifest) {
      flip(c.offset + (c.size >> 1))
      try {
        const { out, error } = readShared()
        assert.ok(error instanceof IntegrityError && error.message.includes('is corrupt'), `chunk at ${c.offset}: ${String(error)}`)
        assert.equal(out.length, c.offset, `chunk at ${c.offset}: the bytes before it`)
        assert.ok(out.equals(data.subarray(0, c.offset)))
      } finally {
        flip(c.offset + (c.size >> 1))
      }
    }
  })
})
