import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { readAll } from '../../src/castore/blob-service.js'
import { EMPTY_DIGEST, b3, toHex } from '../../src/castore/digest.js'
import { InvalidInputError } from '../../src/errors.js'
import { randomBytes } from '../helpers/trees.js'
import { freshStore, type OpenStore } from './harness.js'

/** In pieces of `size`: a streamed source, never one buffer. */
export async function* pieces(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size)
}

/** What every BlobService must do (castore/blob-service.ts). */
export function describeBlobService(name: string, open: OpenStore): void {
  describe(`${name}: BlobService contract`, () => {
    const store = freshStore(open)

    test('put streams, returns the BLAKE3 digest and size; has and open give it back', async () => {
      const { blobs } = store()
      const data = randomBytes(3 * 1024 * 1024 + 17, 1)
      const info = await blobs.put(pieces(data, 100_000))
      assert.equal(toHex(info.digest), toHex(b3(data)))
      assert.equal(info.size, data.length)
      assert.equal(await blobs.has(info.digest), true)
      assert.ok((await readAll((await blobs.open(info.digest))!)).equals(data))
    })

    test('put is idempotent: the same bytes again, whole or in pieces, give the same digest', async () => {
      const { blobs } = store()
      const data = randomBytes(200_000, 2)
      const first = await blobs.put(data)
      const again = await blobs.put(pieces(data, 4096))
      assert.equal(toHex(again.digest), toHex(first.digest))
      assert.equal(again.size, first.size)
      assert.ok((await readAll((await blobs.open(first.digest))!)).equals(data))
    })

    test('the empty blob', async () => {
      const { blobs } = store()
      const info = await blobs.put(new Uint8Array(0))
      assert.equal(toHex(info.digest), toHex(EMPTY_DIGEST))
      assert.equal(info.size, 0)
      assert.equal(await blobs.has(EMPTY_DIGEST), true)
      assert.equal((await readAll((await blobs.open(EMPTY_DIGEST))!)).length, 0)
    })

    test('an absent blob is undefined (and has() false), not an error', async () => {
      const { blobs } = store()
      const d = b3(Buffer.from('never stored'))
      assert.equal(await blobs.has(d), false)
      assert.equal(await blobs.open(d), undefined)
      if (blobs.size) assert.equal(await blobs.size(d), undefined)
    })

    test('a malformed digest is an InvalidInputError, not an absent blob', async () => {
      const { blobs } = store()
      for (const d of [new Uint8Array(31), new Uint8Array(33), new Uint8Array(0)]) {
        await assert.rejects(blobs.has(d), InvalidInputError)
        await assert.rejects(blobs.open(d), InvalidInputError)
      }
    })

    test('size(), where offered, is the stored size without reading', async (t) => {
      const { blobs } = store()
      if (!blobs.size) return t.skip('this backend does not offer size()')
      const { digest } = await blobs.put(Buffer.from('twelve bytes'))
      assert.equal(await blobs.size(digest), 12)
    })

    test('concurrent puts of the same bytes all succeed with one digest', async () => {
      const { blobs } = store()
      const data = randomBytes(1_500_000, 3)
      const all = await Promise.all([1, 2, 3, 4].map(() => blobs.put(pieces(data, 65_536))))
      for (const i of all) assert.equal(toHex(i.digest), toHex(b3(data)))
      assert.ok((await readAll((await blobs.open(b3(data)))!)).equals(data))
    })
  })
}
