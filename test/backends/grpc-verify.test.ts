import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { openGrpcStore } from '../../src/backends/grpc/index.js'
import { MemoryBlobService, openMemoryStore } from '../../src/backends/memory/index.js'
import type { ChunkMeta } from '../../src/castore/blob-service.js'
import { chunkStream } from '../../src/castore/chunker.js'
import { type B3Digest, b3, toHex } from '../../src/castore/digest.js'
import { type Daemon, startDaemon } from '../../src/daemon/server.js'
import { parseListen } from '../../src/daemon/listen.js'
import type { Store } from '../../src/store/store.js'
import { randomBytes } from '../helpers/trees.js'

/** A daemon over a store that serves what it holds without checking it, as a daemon with bit rot might. */
class UncheckedBlobs extends MemoryBlobService {
  readonly served = new Map<string, { bytes: Buffer; chunks: ChunkMeta[] }>()

  override async has(d: B3Digest): Promise<boolean> {
    return this.served.has(toHex(d))
  }

  override async open(d: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined> {
    const s = this.served.get(toHex(d))
    if (!s) return undefined
    return (async function* () {
      for (let i = 0; i < s.bytes.length; i += 1 << 20) yield s.bytes.subarray(i, i + (1 << 20))
    })()
  }

  async chunks(d: B3Digest): Promise<ChunkMeta[] | undefined> {
    return this.served.get(toHex(d))?.chunks
  }
}

async function chunkList(data: Buffer): Promise<ChunkMeta[]> {
  const out: ChunkMeta[] = []
  for await (const c of chunkStream((async function* () { yield data })())) out.push({ digest: b3(c), size: c.length })
  return out
}

/** 8 bytes flipped at `at`. */
function corrupted(data: Buffer, at: number): Buffer {
  const bad = Buffer.from(data)
  for (let k = at; k < at + 8; k++) bad[k]! ^= 0xff
  return bad
}

/** Everything the client passes on before it fails, and the failure. */
async function readUntilError(src: AsyncIterable<Uint8Array>): Promise<{ out: Buffer; error?: Error }> {
  const parts: Uint8Array[] = []
  try {
    for await (const c of src) parts.push(Uint8Array.from(c))
    return { out: Buffer.concat(parts) }
  } catch (e) {
    return { out: Buffer.concat(parts), error: e as Error }
  }
}

describe('the gRPC client passes on no byte it has not checked', () => {
  const blobs = new UncheckedBlobs()
  let daemon: Daemon
  let client: Store

  before(async () => {
    daemon = await startDaemon({ ...openMemoryStore(), blobs }, parseListen('127.0.0.1:0'), () => {})
    client = openGrpcStore(daemon.url.replace('grpc+http://', ''), daemon.url, '/nix/store')
  })
  after(async () => {
    await client.close()
    await daemon.shutdown()
  })

  const serve = (data: Buffer, bytes: Buffer, chunks: ChunkMeta[]) => {
    const digest = b3(data)
    blobs.served.set(toHex(digest), { bytes, chunks })
    return digest
  }

  test('a large blob with a chunk list: the chunks before the corrupt one, then an error', async () => {
    const data = randomBytes(12 << 20, 7)
    const chunks = await chunkList(data)
    assert.ok(chunks.length > 50)
    const at = data.length >> 1
    let badStart = 0
    for (const c of chunks) {
      if (badStart + c.size > at) break
      badStart += c.size
    }
    const r = await readUntilError((await client.blobs.open(serve(data, corrupted(data, at), chunks)))!)
    assert.match(String(r.error), /corrupt/)
    assert.equal(r.out.length, badStart)
    assert.ok(r.out.equals(data.subarray(0, badStart)))
  })

  test('the same blob intact reads whole', async () => {
    const data = randomBytes(12 << 20, 8)
    const r = await readUntilError((await client.blobs.open(serve(data, data, await chunkList(data))))!)
    assert.equal(r.error, undefined)
    assert.ok(r.out.equals(data))
  })

  test('more bytes than the chunk list accounts for is an error', async () => {
    const data = randomBytes(6 << 20, 9)
    const chunks = await chunkList(data)
    const r = await readUntilError((await client.blobs.open(serve(data, data, chunks.slice(0, -1))))!)
    assert.match(String(r.error), /more bytes than its chunks/)
  })

  test('a blob of a few MiB without a chunk list is checked whole before any byte', async () => {
    const data = randomBytes(3 << 20, 10)
    const r = await readUntilError((await client.blobs.open(serve(data, corrupted(data, 1 << 20), [])))!)
    assert.match(String(r.error), /corrupt/)
    assert.equal(r.out.length, 0)
  })

  test('a large blob without a chunk list never comes out whole: its last piece waits for the check', async () => {
    const data = randomBytes(12 << 20, 11)
    const r = await readUntilError((await client.blobs.open(serve(data, corrupted(data, data.length - 100), [])))!)
    assert.match(String(r.error), /corrupt/)
    assert.ok(r.out.length < data.length - 100, `${r.out.length} bytes out`)
  })
})
