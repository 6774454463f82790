import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { cacheStore } from '../../src/backends/cache/index.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { type BlobService, type ChunkMeta, readAll } from '../../src/castore/blob-service.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { BackendError } from '../../src/errors.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import { storePathOf } from '../../src/store/path-info.js'
import type { Store } from '../../src/store/store.js'
import { putSyntheticPath } from '../helpers/path-infos.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

/** Counts the blob reads a store's BlobService serves; `down()` makes every call of every service fail, as a far store gone away. */
function watched(store: Store) {
  const reads: string[] = []
  let up = true
  const guard = <T extends object>(service: T): T =>
    new Proxy(service, {
      get(target, key, receiver) {
        const v = Reflect.get(target, key, receiver)
        if (typeof v !== 'function') return v
        return (...args: unknown[]) => {
          if (!up) throw new BackendError('the far store is down')
          if (service === (store.blobs as object) && key === 'open') reads.push(toHex(args[0] as Uint8Array))
          return v.apply(target, args)
        }
      },
    })
  const s: Store = { ...store, blobs: guard(store.blobs), directories: guard(store.directories), pathInfos: guard(store.pathInfos) }
  return { store: s, reads, down: () => void (up = false) }
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cache-'))

describe('cache store', () => {
  test('a blob read from far is written to near as it streams; the next read is near only', async () => {
    const near = openMemoryStore()
    const far = watched(openMemoryStore())
    const data = randomBytes(3 << 20, 1)
    const { digest } = await far.store.blobs.put(data)
    const cache = cacheStore(near, far.store)
    assert.ok((await readAll((await cache.blobs.open(digest))!)).equals(data))
    assert.equal(far.reads.length, 1)
    assert.ok(await near.blobs.has(digest))
    far.down()
    assert.ok((await readAll((await cache.blobs.open(digest))!)).equals(data))
    assert.equal(far.reads.length, 1)
  })

  test('a read stopped early caches nothing', async () => {
    const near = openMemoryStore()
    const far = openMemoryStore()
    const { digest } = await far.blobs.put([randomBytes(1 << 20, 2), randomBytes(1 << 20, 3)])
    const cache = cacheStore(near, far)
    for await (const _ of (await cache.blobs.open(digest))!) break
    assert.equal(await near.blobs.has(digest), false)
  })

  test('a blob far lists chunks of is fetched from far only for the chunks near lacks', async () => {
    const near = openMemoryStore()
    const farStore = openMemoryStore()
    const parts = [randomBytes(100_000, 4), randomBytes(100_000, 5), randomBytes(100_000, 6)]
    const whole = Buffer.concat(parts)
    const chunks: ChunkMeta[] = []
    for (const p of parts) chunks.push({ digest: (await farStore.blobs.put(p)).digest, size: p.length })
    const { digest } = await farStore.blobs.put(whole)
    // A far store that lists the blob's chunks and does not read locally, as a daemon over a local store.
    const chunked: BlobService = Object.assign(Object.create(farStore.blobs), {
      readsLocally: false,
      chunks: async (d: Uint8Array) => (toHex(d) === toHex(digest) ? chunks : undefined),
    })
    const far = watched({ ...farStore, blobs: chunked })
    await near.blobs.put(parts[0]!)
    await near.blobs.put(parts[2]!)
    const cache = cacheStore(near, far.store)
    assert.ok((await readAll((await cache.blobs.open(digest))!)).equals(whole))
    assert.deepEqual(far.reads, [toHex(b3(parts[1]!))])
    assert.ok(await near.blobs.has(digest))
  })

  test('a path found far is filled into near with its closure and tree: far can go away', async () => {
    const near = openMemoryStore()
    const far = watched(openMemoryStore())
    const lib = await putSyntheticPath(far.store.pathInfos, 'lib')
    const tree = makeTree(root, 'mixed')
    const app = await importPath(far.store, tree)
    const user = await putSyntheticPath(far.store.pathInfos, 'user', [lib])
    const cache = cacheStore(near, far.store)
    const want = await readAll(await exportNar(far.store, app.storePath))
    assert.ok((await readAll(await exportNar(cache, app.storePath))).equals(want))
    const stored = (i: typeof lib) => far.store.pathInfos.get(storePathOf(i).digest)
    const [userFar, libFar] = [await stored(user), await stored(lib)]
    assert.deepEqual(await cache.pathInfos.get(storePathOf(user).digest), userFar)
    far.down()
    assert.ok((await readAll(await exportNar(cache, app.storePath))).equals(want))
    // `user` brought its reference along: near holds a closure, as any store does.
    assert.deepEqual(await near.pathInfos.get(storePathOf(lib).digest), libFar)
    // Listing asks far, which knows every path.
    await assert.rejects(async () => {
      for await (const _ of cache.pathInfos.list());
    }, /far store is down/)
  })

  test('writes go to far, then near; a far failure leaves near as it was', async () => {
    const near = openMemoryStore()
    const far = openMemoryStore()
    const cache = cacheStore(near, far)
    const app = await importPath(cache, makeTree(root, 'odd-names'))
    const digest = storePathOf(app.info).digest
    assert.ok(await far.pathInfos.get(digest))
    assert.ok(await near.pathInfos.get(digest))
    const data = randomBytes(2 << 20, 7)
    const broken = { ...far, blobs: Object.assign(Object.create(far.blobs), { put: async () => Promise.reject(new BackendError('far refuses')) }) }
    await assert.rejects(cacheStore(near, broken).blobs.put(data), /far refuses/)
    assert.equal(await near.blobs.has(b3(data)), false)
  })
})
