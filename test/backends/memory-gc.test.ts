/** The memory backend's gc beyond the shared contract (test/contracts/gc.ts): no roots, so no prune; the grace period. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { collectGarbage } from '../../src/ops/gc.js'
import { listRoots } from '../../src/ops/roots.js'
import { verifyStore } from '../../src/ops/verify.js'
import type { Store } from '../../src/store/store.js'

const codeOf = (code: string) => (e: unknown) => (e as { code?: string }).code === code

describe('memory gc', () => {
  test('--prune is refused by the op and by the store itself (no GC roots: every path would go), deleting nothing', async () => {
    const store = openMemoryStore()
    const { digest } = await store.blobs.put(Buffer.from('orphan'))
    await assert.rejects(collectGarbage(store, { graceMs: 0, prune: true }, { storeName: 'memory://' }), codeOf('ERR_UNSUPPORTED'))
    await assert.rejects(store.collectGarbage({ graceMs: 0, prune: true }), codeOf('ERR_UNSUPPORTED'))
    assert.ok(await store.blobs.has(digest))
  })

  test('writing an old orphan again makes it young: an import that re-uploads it keeps it through gc', async () => {
    const store = openMemoryStore()
    const { digest } = await store.blobs.put(Buffer.from('re-put'))
    store.blobs.writtenAt.set(Buffer.from(digest).toString('hex'), Date.now() - 3_600_000)
    await store.blobs.put(Buffer.from('re-put'))
    const r = await collectGarbage(store, { graceMs: 600_000 })
    assert.equal(r.blobs, 0)
    assert.equal(r.keptYoung, 1)
    assert.ok(await store.blobs.has(digest))
  })

  test('a young Directory keeps the old blob it names (an import that found the blob stored already)', async () => {
    const store = openMemoryStore()
    const { digest, size } = await store.blobs.put(Buffer.from('found stored'))
    store.blobs.writtenAt.set(Buffer.from(digest).toString('hex'), Date.now() - 3_600_000)
    const dir = await store.directories.putClosure([{ directories: [], files: [{ kind: 'file', name: Buffer.from('f'), digest, size, executable: false }], symlinks: [] }])
    const r = await collectGarbage(store, { graceMs: 600_000 })
    assert.deepEqual([r.blobs, r.directories, r.keptYoung], [0, 0, 1])
    assert.ok(await store.blobs.has(digest))
    assert.ok(await store.directories.get(dir))
  })

  test('an old orphan goes; a young one stays', async () => {
    const store = openMemoryStore()
    const old = await store.blobs.put(Buffer.from('old'))
    const young = await store.blobs.put(Buffer.from('young'))
    store.blobs.writtenAt.set(Buffer.from(old.digest).toString('hex'), Date.now() - 3_600_000)
    const r = await collectGarbage(store, { graceMs: 600_000 })
    assert.deepEqual([r.blobs, r.keptYoung, r.bytes], [1, 1, 3])
    assert.equal(await store.blobs.has(old.digest), false)
    assert.ok(await store.blobs.has(young.digest))
  })
})

describe('ops on a store without the capability', () => {
  const bare = (): Store => {
    const { blobs, directories, pathInfos, storeDir, close } = openMemoryStore()
    return { blobs, directories, pathInfos, storeDir, close }
  }

  test('gc, verify and roots refuse with ERR_UNSUPPORTED, naming the command and the store', async () => {
    const caller = { storeName: 'grpc+http://example:8000' }
    await assert.rejects(collectGarbage(bare(), { graceMs: 0 }, caller), (e: Error) => codeOf('ERR_UNSUPPORTED')(e) && /^gc needs .* grpc\+http:\/\/example:8000 cannot/.test(e.message))
    await assert.rejects(verifyStore(bare(), {}, caller), codeOf('ERR_UNSUPPORTED'))
    await assert.rejects(listRoots(bare(), { what: 'roots list', ...caller }), (e: Error) => codeOf('ERR_UNSUPPORTED')(e) && /^roots list needs/.test(e.message))
  })
})
