import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { openLocalStore } from '../../src/backends/local/index.js'
import { PACK_SUFFIX, readManifest } from '../../src/backends/local/pack.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { type BlobService, type ChunkMeta, readAll } from '../../src/castore/blob-service.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { CastoreTransfer } from '../../src/castore/transfer.js'
import { IntegrityError } from '../../src/errors.js'
import type { Store } from '../../src/store/store.js'
import { randomBytes } from '../helpers/trees.js'
import { flipByte } from '../helpers/corrupt.js'

const fresh = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-chunk-transfer-'))

/** Every pack under a local store's root, with its manifest. */
function packs(root: string) {
  const shard = path.join(root, 'blobs/b3')
  if (!fs.existsSync(shard)) return []
  return fs.readdirSync(shard).flatMap((s) =>
    fs
      .readdirSync(path.join(shard, s))
      .filter((n) => n.endsWith(PACK_SUFFIX))
      .map((n) => {
        const self = path.basename(n, PACK_SUFFIX)
        return { self, manifest: readManifest(path.join(shard, s, n), self)! }
      }),
  )
}

const tmpFiles = (root: string) => (fs.existsSync(path.join(root, 'tmp')) ? fs.readdirSync(path.join(root, 'tmp')) : [])

/**
 * A memory store whose blob `whole` lists `chunks` (which need not be where
 * a chunker would cut); `remote` makes its blobs look like a network
 * client's (not read locally); `serve` may change what open() gives for a
 * digest (a lying source). Every open() is recorded.
 */
async function listingSource(parts: Buffer[], opts: { remote?: boolean; serve?: (d: Uint8Array, data: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array> } = {}) {
  const serve = opts.serve ?? ((_, x) => x)
  const store = openMemoryStore()
  const chunks: ChunkMeta[] = []
  for (const p of parts) chunks.push({ digest: (await store.blobs.put(p)).digest, size: p.length })
  const whole = Buffer.concat(parts)
  const { digest } = await store.blobs.put(whole)
  const opened: string[] = []
  const blobs: BlobService = Object.assign(Object.create(store.blobs), {
    ...(opts.remote ? { readsLocally: false } : {}),
    chunks: async (d: Uint8Array) => (toHex(d) === toHex(digest) ? chunks : (await store.blobs.has(d)) ? [] : undefined),
    open: async (d: Uint8Array) => {
      opened.push(toHex(d))
      const data = await store.blobs.open(d)
      return data && serve(d, data)
    },
  })
  return { store: { ...store, blobs } as Store, parts, chunks, whole, digest, opened }
}

/** A blob of three chunks in a store that lists them (see listingSource). */
const chunkedStore = (remote: boolean) => listingSource([randomBytes(70_000, 1), randomBytes(70_000, 2), randomBytes(70_000, 3)], { remote })

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

/**
 * A local target writes a large blob from the source's chunk list: the
 * chunks as listed (not cut again), only the ones it lacks fetched, each
 * checked, the whole blob checked before anything is published.
 */
describe('a local target writes a large blob from the source chunk list', () => {
  test('the pack lists the chunks as the source gives them, and reads back the same bytes', async () => {
    // Three chunks of 700,000 bytes: the local chunker never cuts above 256 KiB, so re-chunking would show.
    const src = await listingSource([randomBytes(700_000, 1), randomBytes(700_000, 2), randomBytes(700_000, 3)])
    const root = fresh()
    const to = await openLocalStore(root)
    const t = new CastoreTransfer(src.store, to)
    await t.blobs([src.digest])
    const [pack, ...others] = packs(root)
    assert.equal(others.length, 0)
    assert.equal(pack!.self, toHex(src.digest))
    assert.deepEqual(
      pack!.manifest.map((c) => [toHex(c.digest), c.size]),
      src.chunks.map((c) => [toHex(c.digest), c.size]),
    )
    assert.equal(t.counts.bytes, src.whole.length)
    assert.deepEqual(src.opened, [toHex(src.digest)], 'every chunk wanted: one read of the whole blob')
    assert.ok((await readAll((await to.blobs.open(src.digest))!)).equals(src.whole))
  })

  test('chunks the target holds are neither fetched nor written again', async () => {
    const parts = [randomBytes(700_000, 11), randomBytes(700_000, 12), randomBytes(700_000, 13), randomBytes(700_000, 14)]
    const first = await listingSource(parts)
    const root = fresh()
    const to = await openLocalStore(root)
    await new CastoreTransfer(first.store, to).blobs([first.digest])
    // The same blob with its third chunk changed.
    const changed = randomBytes(700_000, 99)
    const second = await listingSource([parts[0]!, parts[1]!, changed, parts[3]!])
    const t = new CastoreTransfer(second.store, to)
    await t.blobs([second.digest])
    assert.equal(t.counts.bytes, changed.length)
    assert.deepEqual(second.opened, [toHex(b3(changed))], 'only the changed chunk is read from the source')
    const pack = packs(root).find((p) => p.self === toHex(second.digest))!
    const own = pack.manifest.filter((c) => c.pack === pack.self)
    assert.deepEqual(
      own.map((c) => toHex(c.digest)),
      [toHex(b3(changed))],
      'the new pack stores only the new chunk; the others are referenced',
    )
    assert.ok((await readAll((await to.blobs.open(second.digest))!)).equals(second.whole))
  })

  test('a chunk whose bytes do not match its digest is refused, and the target is left as it was', async () => {
    const parts = [randomBytes(700_000, 21), randomBytes(700_000, 22), randomBytes(700_000, 23)]
    // A source that does not check what it serves: one byte of the second chunk flipped.
    const src = await listingSource(parts, {
      serve: (_, data) =>
        (async function* () {
          const bytes = Buffer.from(await readAll(data))
          bytes[700_000 + 5]! ^= 1
          yield bytes
        })(),
    })
    const root = fresh()
    const to = await openLocalStore(root)
    const before = packs(root).length
    await assert.rejects(new CastoreTransfer(src.store, to).blobs([src.digest]), (e: unknown) => e instanceof IntegrityError && /chunk .* does not match/.test(e.message))
    assert.equal(await to.blobs.has(src.digest), false)
    assert.equal(packs(root).length, before)
    assert.deepEqual(tmpFiles(root), [])
  })

  test('a chunk list that does not make up the blob is refused, though every chunk matches its digest', async () => {
    const parts = [randomBytes(700_000, 31), randomBytes(700_000, 32)]
    const src = await listingSource(parts)
    // The list names the right chunks in the wrong order: each checks, the whole does not.
    const lying: Store = { ...src.store, blobs: Object.assign(Object.create(src.store.blobs), { chunks: async () => [...src.chunks].reverse() }) }
    const root = fresh()
    const to = await openLocalStore(root)
    // The source is asked for chunks by their own digests only if the target holds some: then it holds one, so both fetch paths run.
    for (const held of [false, true]) {
      if (held) await new CastoreTransfer((await listingSource([parts[0]!, randomBytes(700_000, 33)])).store, to).blobs([b3(Buffer.concat([parts[0]!, randomBytes(700_000, 33)]))])
      // Read whole, the blob's bytes fail the first chunk listed; read chunk by chunk, each passes and the whole does not.
      const why = held ? /its chunks do not make up its digest/ : /its chunk .* does not match its digest/
      await assert.rejects(new CastoreTransfer(lying, to).blobs([src.digest]), (e: unknown) => e instanceof IntegrityError && why.test(e.message))
      assert.equal(await to.blobs.has(src.digest), false)
      assert.deepEqual(tmpFiles(root), [])
    }
  })
})

/**
 * Local store to local store: a large blob's pack, sealed and borrowing
 * nothing, that shares no chunk with the target is copied whole by the
 * kernel (its bytes never pass through the process), then read back and
 * checked chunk by chunk before it may be published.
 */
describe('from a local store to another, a pack the target shares no chunk of is copied whole, then checked', () => {
  const packFile = (root: string, self: string) => path.join(root, 'blobs/b3', self.slice(0, 2), self + PACK_SUFFIX)
  /** A local store holding `data` (a pack), whose blob reads are recorded. */
  async function localSource(data: Buffer) {
    const root = fresh()
    const store = await openLocalStore(root)
    const { digest } = await store.blobs.put(data)
    const read: string[] = []
    const spy = (name: 'open' | 'readUnchecked') =>
      function (this: BlobService, d: Uint8Array) {
        read.push(`${name} ${toHex(d)}`)
        return (store.blobs as unknown as Record<string, (d: Uint8Array) => unknown>)[name]!.call(store.blobs, d)
      }
    const blobs: BlobService = Object.assign(Object.create(store.blobs), { open: spy('open'), readUnchecked: spy('readUnchecked') })
    return { root, store: Object.assign(Object.create(store), { blobs }) as Store, digest, read }
  }

  test('the target pack is the source pack byte for byte; no byte of it is read through the process', async () => {
    const data = randomBytes(3 << 20, 41)
    const src = await localSource(data)
    const root = fresh()
    const to = await openLocalStore(root)
    const t = new CastoreTransfer(src.store, to)
    await t.blobs([src.digest])
    assert.deepEqual(src.read, [], 'the source is not read: its file is copied')
    const hex = toHex(src.digest)
    assert.ok(fs.readFileSync(packFile(root, hex)).equals(fs.readFileSync(packFile(src.root, hex))))
    assert.equal(t.counts.bytes, data.length)
    assert.ok((await readAll((await to.blobs.open(src.digest))!)).equals(data))
    assert.deepEqual(tmpFiles(root), [])
  })

  test('a corrupt chunk in the source pack is refused, and the target is left as it was', async () => {
    const data = randomBytes(3 << 20, 42)
    const src = await localSource(data)
    const file = packFile(src.root, toHex(src.digest))
    // Stored raw (random data): flip a byte in the middle of the payload.
    fs.chmodSync(file, 0o644)
    flipByte(file, 3 << 19, 1)
    const root = fresh()
    const to = await openLocalStore(root)
    await assert.rejects(new CastoreTransfer(src.store, to).blobs([src.digest]), (e: unknown) => e instanceof IntegrityError && /corrupt/.test(e.message))
    assert.equal(await to.blobs.has(src.digest), false)
    assert.deepEqual(packs(root), [])
    assert.deepEqual(tmpFiles(root), [])
  })

  test('a blob that repeats itself (chunks listed twice, stored once) is copied as it is', async () => {
    const half = randomBytes(3 << 20, 45)
    const data = Buffer.concat([half, half])
    const src = await localSource(data)
    const hex = toHex(src.digest)
    const manifest = readManifest(packFile(src.root, hex), hex)!
    assert.ok(manifest.some((c, i) => i > 0 && c.offset < manifest[i - 1]!.offset), 'some chunk is listed again, at an earlier offset')
    const root = fresh()
    const to = await openLocalStore(root)
    await new CastoreTransfer(src.store, to).blobs([src.digest])
    assert.deepEqual(src.read, [])
    assert.ok(fs.readFileSync(packFile(root, hex)).equals(fs.readFileSync(packFile(src.root, hex))))
    assert.ok((await readAll((await to.blobs.open(src.digest))!)).equals(data))
  })

  test('a target that holds some of its chunks writes its own pack, referencing them', async () => {
    const data = randomBytes(3 << 20, 43)
    const src = await localSource(data)
    const root = fresh()
    const to = await openLocalStore(root)
    // A prefix of the blob is cut where the blob is, up to its end: the target holds the first chunks.
    await to.blobs.put(data.subarray(0, 3 << 19))
    await new CastoreTransfer(src.store, to).blobs([src.digest])
    assert.notDeepEqual(src.read, [], 'the chunks the target lacks are read from the source')
    const pack = packs(root).find((p) => p.self === toHex(src.digest))!
    assert.ok(pack.manifest.some((c) => c.pack !== pack.self), 'chunks it held are referenced, not copied')
    assert.ok((await readAll((await to.blobs.open(src.digest))!)).equals(data))
  })
})
