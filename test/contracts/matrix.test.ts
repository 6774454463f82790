import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { cacheStore } from '../../src/backends/cache/index.js'
import { openGrpcStore } from '../../src/backends/grpc/index.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { parseListen } from '../../src/daemon/listen.js'
import { startDaemon } from '../../src/daemon/server.js'
import { DEFAULT_STORE_DIR } from '../../src/store/store-path.js'
import type { Store } from '../../src/store/store.js'
import { describeBlobService } from './blob-service.js'
import { describeChunkLists, describeReferrers, describeSignatureAdding, describeStaging } from './capabilities.js'
import { describeDirectoryService } from './directory-service.js'
import type { OpenStore } from './harness.js'
import { describePathInfoService } from './path-info-service.js'

/*
 * Every contract against every backend. A new backend is one line in
 * BACKENDS: a name and a function opening a fresh, empty store whose
 * close() releases all it holds.
 */

/** `store`, whose close() then also runs `then` (the store keeps its class: capabilities live on it). */
function alsoOnClose(store: Store, then: () => Promise<void>): Store {
  const close = store.close.bind(store)
  store.close = async () => {
    try {
      await close()
    } finally {
      await then()
    }
  }
  return store
}

/** A store made in a fresh temp dir, removed when the store is closed. */
async function inTempDir(open: (dir: string) => Promise<Store>): Promise<Store> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-contract-'))
  return alsoOnClose(await open(dir), async () => fs.rmSync(dir, { recursive: true, force: true }))
}

/** `inner` served by a daemon in this process on a unix socket, and a gRPC client talking to it. */
function overGrpc(inner: Store): Promise<Store> {
  return inTempDir(async (dir) => {
    const daemon = await startDaemon(inner, parseListen(`unix:${path.join(dir, 'sock')}`), () => {})
    const client = openGrpcStore(daemon.url.replace(/^grpc\+unix:\/\//, 'unix:'), daemon.url, inner.storeDir)
    return alsoOnClose(client, async () => {
      await daemon.shutdown()
      await inner.close()
    })
  })
}

const local = () => inTempDir((dir) => openLocalStore(path.join(dir, 'store'), DEFAULT_STORE_DIR))

const BACKENDS: Array<[name: string, open: OpenStore]> = [
  ['memory', async () => openMemoryStore()],
  ['local', local],
  ['gRPC over memory', () => overGrpc(openMemoryStore())],
  ['gRPC over local', async () => overGrpc(await local())],
  ['cache: memory in front of memory', async () => cacheStore(openMemoryStore(), openMemoryStore())],
  ['cache: local in front of gRPC over memory', async () => cacheStore(await local(), await overGrpc(openMemoryStore()))],
]

for (const [name, open] of BACKENDS) {
  describeBlobService(name, open)
  describeDirectoryService(name, open)
  describePathInfoService(name, open)
  describeStaging(name, open)
  describeChunkLists(name, open)
  describeReferrers(name, open)
  describeSignatureAdding(name, open)
}
