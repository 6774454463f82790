/**
 * The contracts on the distributed backends, against real servers
 * (test/helpers/servers.ts): blobs in S3 (Ceph radosgw), Directories and
 * PathInfos in PostgreSQL, each store in a fresh bucket and database.
 */
import { test } from 'node:test'
import { cacheStore } from '../../src/backends/cache/index.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { openStore } from '../../src/backends/open-store.js'
import { openPostgres } from '../../src/backends/postgres/index.js'
import type { BlobService } from '../../src/castore/blob-service.js'
import { DEFAULT_STORE_DIR } from '../../src/store/store-path.js'
import type { Store } from '../../src/store/store.js'
import { backendsForTests, freshBucket, freshDatabase } from '../helpers/suite-servers.js'
import { describeBlobService } from './blob-service.js'
import { describeChunkLists, describeReferrers, describeSignatureAdding, describeStaging } from './capabilities.js'
import { describeDirectoryService } from './directory-service.js'
import type { OpenStore } from './harness.js'
import { describeGarbageCollecting, describeGcRoots } from './gc.js'
import { describePathInfoService } from './path-info-service.js'
import { hasGarbageCollecting, hasGcRoots } from '../../src/store/capabilities.js'

const servers = await backendsForTests()
if (typeof servers === 'string') {
  test('S3 and PostgreSQL backend contracts', { skip: servers }, () => {})
} else {
  const { s3, pg } = servers
  const onS3 = async () => openStore({ url: 'memory://', blobServiceAddr: await freshBucket(s3!) })
  /** Directories and PathInfos in a fresh database over `blobs` (which Directory puts check file sizes against); the database is dropped on close. */
  const onPostgres = async (blobs: BlobService, closeBlobs: () => Promise<void>): Promise<Store> => {
    const db = await freshDatabase(pg!)
    const meta = await openPostgres(db.url, DEFAULT_STORE_DIR, blobs)
    return {
      blobs,
      ...meta,
      close: async () => {
        await meta.close()
        await closeBlobs()
        await db.drop()
      },
    }
  }
  /** As a user opens it: `--store postgres://… --blob-service-addr s3://…` (the PostgreSQL backend is given the S3 blobs). */
  const s3AndPostgres: OpenStore = async () => {
    const db = await freshDatabase(pg!)
    const store = await openStore({ url: db.url, blobServiceAddr: await freshBucket(s3!) })
    const close = store.close.bind(store)
    store.close = async () => {
      await close()
      await db.drop()
    }
    return store
  }
  const memoryAndPostgres: OpenStore = async () => onPostgres(openMemoryStore().blobs, async () => {})
  const backends: Array<[string, OpenStore]> = [
    ['s3 blobs + postgres', s3AndPostgres],
    ['s3 blobs under a prefix', async () => openStore({ url: 'memory://', blobServiceAddr: await freshBucket(s3!, 'some/prefix') })],
    ['memory blobs + postgres', memoryAndPostgres],
    ['cache: memory in front of s3 + postgres', async () => cacheStore(openMemoryStore(), await s3AndPostgres())],
  ]
  // gc and GC roots: the S3 + PostgreSQL store offers both (memory blobs + postgres neither: the database cannot see those blobs from elsewhere).
  const opened: Store[] = []
  const gcStore = async () => {
    const store = await s3AndPostgres()
    opened.push(store)
    if (!hasGarbageCollecting(store) || !hasGcRoots(store)) throw new Error('the S3 + PostgreSQL store offers no gc or GC roots')
    return store
  }
  const closeAll = async () => {
    for (const s of opened.splice(0)) await s.close()
  }
  describeGarbageCollecting('s3 blobs + postgres', gcStore, closeAll)
  describeGcRoots('s3 blobs + postgres', gcStore, closeAll)
  for (const [name, open] of backends) {
    describeBlobService(name, open)
    describeChunkLists(name, open)
    describeStaging(name, open)
    if (name === 's3 blobs under a prefix') continue
    describeDirectoryService(name, open)
    describePathInfoService(name, open)
    describeReferrers(name, open)
    describeSignatureAdding(name, open)
  }
}
