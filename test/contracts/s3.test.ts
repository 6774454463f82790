/**
 * The contracts on the S3 blob backend, against a real S3 server (Ceph
 * radosgw, test/helpers/servers.ts): blobs in a fresh bucket, Directories and
 * PathInfos in memory, as `--blob-service-addr s3://…` composes them.
 */
import { test } from 'node:test'
import { openStore } from '../../src/backends/open-store.js'
import { cacheStore } from '../../src/backends/cache/index.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { backendsForTests, freshBucket } from '../helpers/suite-servers.js'
import { describeBlobService } from './blob-service.js'
import { describeChunkLists, describeStaging } from './capabilities.js'
import type { OpenStore } from './harness.js'

const servers = await backendsForTests()
if (typeof servers === 'string' || !servers.s3) {
  test('S3 backend contracts', { skip: typeof servers === 'string' ? servers : 'no S3 server' }, () => {})
} else {
  const s3 = servers.s3
  const onS3: OpenStore = async () => openStore({ url: 'memory://', blobServiceAddr: await freshBucket(s3) })
  const backends: Array<[string, OpenStore]> = [
    ['s3 blobs', onS3],
    ['s3 blobs under a prefix', async () => openStore({ url: 'memory://', blobServiceAddr: await freshBucket(s3, 'some/prefix') })],
    ['cache: memory in front of s3 blobs', async () => cacheStore(openMemoryStore(), await onS3())],
  ]
  for (const [name, open] of backends) {
    describeBlobService(name, open)
    describeChunkLists(name, open)
    describeStaging(name, open)
  }
}
