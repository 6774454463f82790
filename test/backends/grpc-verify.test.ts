import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { openGrpcStore } from '../../src/backends/grpc/index.js'
import { MemoryBlobService, openMemoryStore } from '../../src/backends/memory/index.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { type ChunkMeta, hasStaging, readAll } from '../../src/castore/blob-service.js'
import { chunksFrom, hasChunkedPuts } from '../../src/castore/chunk-transfer.js'
import { chunkStream } from '../../src/castore/chunker.js'
import { type B3Digest, b3, toHex } from '../../src/castore/digest.js'
import { type Daemon, startDaemon } from '../../src/daemon/server.js'
import { parseListen } from '../../src/daemon/listen.js'
import type { Store } from '../../src/store/store.js'
import { randomBytes } from '../helpers/trees.js'

/** A daemon over a store that serves what it holds without checking it, as a daemon with bit rot might. */
class UncheckedBlobs extends MemoryBlobService {
  readonly served = new Map<string, { bytes: Buffer; chunks: ChunkMeta[]; piece?: number }>()

  override async has(d: B3Digest): Promise<boolean> {
    return this.served.has(toHex(d))
  }

  override async open(d: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined> {
    const s = this.served.get(toHex(d))
    if (!s) return undefined
    const piece = s.piece ?? 1 << 20
    return (async function* () {
      for (let i = 0; i < s.bytes.length; i += piece) yield s.bytes.subarray(i, i + piece)
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

/**
 * A daemon over a memory store whose blobs are served as given (UncheckedBlobs), and a gRPC client
 * of it (`client()`), started before the tests of the describe that calls this and stopped after.
 */
function uncheckedDaemon(): { blobs: UncheckedBlobs; client: () => Store } {
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
  return { blobs, client: () => client }
}

describe('the gRPC client passes on no byte it has not checked', () => {
  const { blobs, client } = uncheckedDaemon()

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
    const r = await readUntilError((await client().blobs.open(serve(data, corrupted(data, at), chunks)))!)
    assert.match(String(r.error), /corrupt/)
    assert.equal(r.out.length, badStart)
    assert.ok(r.out.equals(data.subarray(0, badStart)))
  })

  test('the same blob intact reads whole', async () => {
    const data = randomBytes(12 << 20, 8)
    const r = await readUntilError((await client().blobs.open(serve(data, data, await chunkList(data))))!)
    assert.equal(r.error, undefined)
    assert.ok(r.out.equals(data))
  })

  test('more bytes than the chunk list accounts for is an error', async () => {
    const data = randomBytes(6 << 20, 9)
    const chunks = await chunkList(data)
    const r = await readUntilError((await client().blobs.open(serve(data, data, chunks.slice(0, -1))))!)
    assert.match(String(r.error), /more bytes than its chunks/)
  })

  test('a blob of a few MiB without a chunk list is checked whole before any byte', async () => {
    const data = randomBytes(3 << 20, 10)
    const r = await readUntilError((await client().blobs.open(serve(data, corrupted(data, 1 << 20), [])))!)
    assert.match(String(r.error), /corrupt/)
    assert.equal(r.out.length, 0)
  })

  test('a large blob without a chunk list never comes out whole: its last piece waits for the check', async () => {
    const data = randomBytes(12 << 20, 11)
    const r = await readUntilError((await client().blobs.open(serve(data, corrupted(data, data.length - 100), [])))!)
    assert.match(String(r.error), /corrupt/)
    assert.ok(r.out.length < data.length - 100, `${r.out.length} bytes out`)
  })
})

/** Chunks of `size` bytes (the last shorter): a chunk list whose chunks span several messages. */
function fixedChunks(data: Buffer, size: number): ChunkMeta[] {
  const out: ChunkMeta[] = []
  for (let i = 0; i < data.length; i += size) out.push({ digest: b3(data.subarray(i, i + size)), size: Math.min(size, data.length - i) })
  return out
}

describe('lent reads (open with lend): pieces in reused buffers, each checked as before', () => {
  const { blobs, client } = uncheckedDaemon()

  const serve = (data: Buffer, bytes: Buffer, chunks: ChunkMeta[], piece?: number) => {
    const digest = b3(data)
    blobs.served.set(toHex(digest), { bytes, chunks, piece })
    return digest
  }

  /** As readUntilError (each piece copied before the next is asked for), and how many pieces came in a buffer an earlier piece was in. */
  async function readLent(digest: B3Digest, stopAfter = Infinity): Promise<{ out: Buffer; error?: Error; reused: number }> {
    const seen = new Set<ArrayBufferLike>()
    let reused = 0
    let pieces = 0
    const parts: Uint8Array[] = []
    try {
      for await (const c of (await client().blobs.open(digest, { lend: true }))!) {
        if (seen.has(c.buffer)) reused++
        seen.add(c.buffer)
        parts.push(Uint8Array.from(c))
        if (++pieces >= stopAfter) break
      }
      return { out: Buffer.concat(parts), reused }
    } catch (e) {
      return { out: Buffer.concat(parts), error: e as Error, reused }
    }
  }

  test('a large blob with content-defined chunks (most span two messages) reads whole, through reused buffers', async () => {
    const data = randomBytes(24 << 20, 21)
    const r = await readLent(serve(data, data, await chunkList(data)))
    assert.equal(r.error, undefined)
    assert.ok(r.out.equals(data))
    assert.ok(r.reused > 10, `${r.reused} pieces in reused buffers`)
  })

  test('chunks of 4 MiB in messages of 64 KiB (each spans 64 messages, more than the ring holds) read whole', async () => {
    const data = randomBytes(20 << 20, 22)
    const r = await readLent(serve(data, data, fixedChunks(data, 4 << 20), 64 << 10))
    assert.equal(r.error, undefined)
    assert.ok(r.out.equals(data))
    assert.ok(r.reused > 0)
  })

  test('chunks of 3 MiB + 1 in 1 MiB messages read whole', async () => {
    const data = randomBytes(20 << 20, 23)
    const r = await readLent(serve(data, data, fixedChunks(data, (3 << 20) + 1)))
    assert.equal(r.error, undefined)
    assert.ok(r.out.equals(data))
  })

  test('a blob without a chunk list reads whole', async () => {
    const data = randomBytes(12 << 20, 24)
    const r = await readLent(serve(data, data, []))
    assert.equal(r.error, undefined)
    assert.ok(r.out.equals(data))
  })

  for (const [what, size, piece] of [['content-defined chunks', 0, undefined], ['chunks of 3 MiB + 1 spanning 64 KiB messages', (3 << 20) + 1, 64 << 10]] as const) {
    test(`a corrupt chunk (${what}): the chunks before it, nothing of it, then an error`, async () => {
      const data = randomBytes(16 << 20, 25)
      const chunks = size ? fixedChunks(data, size) : await chunkList(data)
      const at = 11 << 20
      let badStart = 0
      for (const c of chunks) {
        if (badStart + c.size > at) break
        badStart += c.size
      }
      const r = await readLent(serve(data, corrupted(data, at), chunks, piece))
      assert.match(String(r.error), /corrupt/)
      assert.equal(r.out.length, badStart)
      assert.ok(r.out.equals(data.subarray(0, badStart)))
    })
  }

  test('a reader that stops early gets what it read right, and the next read works', async () => {
    const data = randomBytes(24 << 20, 26)
    const digest = serve(data, data, await chunkList(data))
    const r = await readLent(digest, 30)
    assert.equal(r.error, undefined)
    assert.ok(r.out.length > 0 && r.out.length < data.length)
    assert.ok(r.out.equals(data.subarray(0, r.out.length)))
    const again = await readLent(digest)
    assert.ok(again.out.equals(data))
  })

  test('a copy to a local store by chunk list reads lent (64 KiB messages): intact it is stored whole; a corrupt chunk stores nothing', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-lent-copy-'))
    const to = await openLocalStore(root)
    try {
      const blobsTo = to.blobs
      assert.ok(hasStaging(blobsTo))
      const data = randomBytes(16 << 20, 27)
      const chunks = await chunkList(data)
      for (const [bytes, ok] of [[corrupted(data, 9 << 20), false], [data, true]] as const) {
        const digest = serve(data, bytes, chunks, 64 << 10)
        const stage = blobsTo.stage()
        assert.ok(hasChunkedPuts(stage))
        const put = stage.putChunks(digest, chunks, chunksFrom(client().blobs, digest, chunks, () => {}))
        if (!ok) {
          await assert.rejects(put, /corrupt/)
          await stage.abort()
          assert.equal(await blobsTo.has(digest), false)
          continue
        }
        assert.equal((await put)?.size, data.length)
        await stage.commit()
        assert.ok((await readAll((await blobsTo.open(digest))!)).equals(data))
      }
    } finally {
      await to.close()
      fs.rmSync(root, { recursive: true, force: true })
    }
  })
})
