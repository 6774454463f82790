import assert from 'node:assert/strict'
import { test } from 'node:test'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { type BlobService, type ChunkMeta, readAll } from '../../src/castore/blob-service.js'
import { toHex } from '../../src/castore/digest.js'
import { CastoreTransfer } from '../../src/castore/transfer.js'
import type { Store } from '../../src/store/store.js'
import { randomBytes } from '../helpers/trees.js'

/**
 * A blob of three chunks in a store that lists them; `remote` makes the
 * store's blobs look like a network client's (not read locally), and every
 * open() of them is recorded.
 */
async function chunkedStore(remote: boolean) {
  const store = openMemoryStore()
  const parts = [randomBytes(70_000, 1), randomBytes(70_000, 2), randomBytes(70_000, 3)]
  const chunks: ChunkMeta[] = []
  for (const p of parts) chunks.push({ digest: (await store.blobs.put(p)).digest, size: p.length })
  const whole = Buffer.concat(parts)
  const { digest } = await store.blobs.put(whole)
  const opened: string[] = []
  const blobs: BlobService = Object.assign(Object.create(store.blobs), {
    ...(remote ? { readsLocally: false } : {}),
    chunks: async (d: Uint8Array) => (toHex(d) === toHex(digest) ? chunks : (await store.blobs.has(d)) ? [] : undefined),
    open: (d: Uint8Array) => {
      opened.push(toHex(d))
      return store.blobs.open(d)
    },
  })
  return { store: { ...store, blobs } as Store, parts, whole, digest, opened }
}

test('from a store read over a network to a local one, only the chunks the target lacks are fetched', async () => {
  const from = await chunkedStore(true)
  const to = openMemoryStore()
  await to.blobs.put(from.parts[0]!)
  await to.blobs.put(from.parts[2]!)
  const t = new CastoreTransfer(from.store, to)
  await t.blobs([from.digest])
  assert.equal(t.counts.bytes, from.parts[1]!.length)
  assert.ok((await readAll((await to.blobs.open(from.digest))!)).equals(from.whole))
})

test('to a target read over a network, nothing is read back from it: the blob comes whole from the source', async () => {
  const from = await chunkedStore(false)
  // The target holds two of the three chunks, not the blob.
  const toStore = openMemoryStore()
  await toStore.blobs.put(from.parts[0]!)
  await toStore.blobs.put(from.parts[2]!)
  const opened: string[] = []
  const remoteTarget: BlobService = Object.assign(Object.create(toStore.blobs), {
    readsLocally: false,
    open: (d: Uint8Array) => {
      opened.push(toHex(d))
      return toStore.blobs.open(d)
    },
  })
  const t = new CastoreTransfer(from.store, { ...toStore, blobs: remoteTarget })
  await t.blobs([from.digest])
  assert.deepEqual(opened, [])
  assert.equal(t.counts.bytes, from.whole.length)
  assert.deepEqual(from.opened, [toHex(from.digest)])
  assert.ok((await readAll((await toStore.blobs.open(from.digest))!)).equals(from.whole))
})
