import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { cacheStore } from '../../src/backends/cache/index.js'
import { openGrpcStore } from '../../src/backends/grpc/index.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { openStore } from '../../src/backends/open-store.js'
import { parseListen } from '../../src/daemon/listen.js'
import { type Daemon, startDaemon } from '../../src/daemon/server.js'
import type { Store } from '../../src/store/store.js'
import { describePublish } from '../contracts/publish.js'

const scratch = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-publish-'))

describePublish('memory', async () => openMemoryStore())

const local = scratch()
describePublish('local', () => openLocalStore(path.join(local, 'store')), async () => fs.rmSync(local, { recursive: true, force: true }))

// The same rule when blobs live in one store and Directories and PathInfos in another.
describePublish('memory, blobs from another memory store', async () => ({ ...openMemoryStore(), blobs: openMemoryStore().blobs }))

const mixed = scratch()
describePublish(
  'local, blobs from another local store (--blob-service-addr)',
  () => openStore({ url: path.join(mixed, 'meta'), blobServiceAddr: path.join(mixed, 'blobs') }),
  async () => fs.rmSync(mixed, { recursive: true, force: true }),
)

// Through a daemon the client does not walk the tree (admitsOnPut): the daemon's publish refuses, and its status maps back.
let daemon: Daemon | undefined
describePublish(
  'gRPC over memory',
  async (): Promise<Store> => {
    daemon = await startDaemon(openMemoryStore(), parseListen('127.0.0.1:0'), () => {})
    return openGrpcStore(daemon.url.replace('grpc+http://', ''), daemon.url, '/nix/store')
  },
  async () => daemon?.shutdown(),
)

// Through the cache combinator: admitted against near-then-far services, stored far then near.
describePublish('cache: memory in front of memory', async () => cacheStore(openMemoryStore(), openMemoryStore()))
