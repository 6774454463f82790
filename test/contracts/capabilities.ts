import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type BlobService, hasChunkLists, hasStaging, readAll, type Staging } from '../../src/castore/blob-service.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { AlreadyExistsError, InvalidInputError } from '../../src/errors.js'
import { hasReferrers, type PathInfoService, type SignatureAdding } from '../../src/store/path-info-service.js'
import { canAddSignatures } from '../../src/store/capabilities.js'
import { encodePathInfo } from '../../src/store/proto.js'
import type { Store } from '../../src/store/store.js'
import type { PathInfo, Signature } from '../../src/store/path-info.js'
import { baseNameOf, syntheticPath } from '../helpers/path-infos.js'
import { randomBytes } from '../helpers/trees.js'
import { pieces } from './blob-service.js'
import { describeCapability, type OpenStore } from './harness.js'
import { digestOf } from './path-info-service.js'

type StagingStore = Store & { blobs: BlobService & Staging }
type ChunkListStore = Store & { blobs: Required<Pick<BlobService, 'chunks'>> }
type ReferrersStore = Store & { pathInfos: Required<Pick<PathInfoService, 'referrers'>> }
type SigningStore = Store & { pathInfos: PathInfoService & SignatureAdding }

/** Staging (castore/blob-service.ts Staging): transactional blob writes. */
export function describeStaging(name: string, open: OpenStore): void {
  describeCapability(`${name}: staging contract`, open, 'hasStaging(store.blobs)', (s): s is StagingStore => hasStaging(s.blobs), (store) => {
    test('a staged blob is invisible until commit, then readable', async () => {
      const { blobs } = store()
      const data = randomBytes(2 * 1024 * 1024 + 5, 11)
      const stage = blobs.stage()
      const a = await stage.put(pieces(data, 65_536))
      const b = await stage.put(Buffer.from('staged then committed'))
      assert.equal(toHex(a.digest), toHex(b3(data)))
      assert.equal(await blobs.has(a.digest), false)
      assert.equal(await blobs.has(b.digest), false)
      assert.equal(await blobs.open(b.digest), undefined)
      await stage.commit()
      assert.equal(await blobs.has(b.digest), true)
      assert.ok((await readAll((await blobs.open(a.digest))!)).equals(data))
    })

    test('an aborted stage leaves nothing, and an empty one commits', async () => {
      const { blobs } = store()
      const stage = blobs.stage()
      const big = await stage.put(pieces(randomBytes(1_500_000, 12), 100_000))
      const small = await stage.put(Buffer.from('staged then aborted'))
      await stage.abort()
      assert.equal(await blobs.has(big.digest), false)
      assert.equal(await blobs.has(small.digest), false)
      await blobs.stage().commit()
    })
  })
}

/** Chunk lists (BlobService.chunks): a blob's chunks in order, each readable by its digest; empty if stored whole. */
export function describeChunkLists(name: string, open: OpenStore): void {
  describeCapability(`${name}: chunk lists contract`, open, 'hasChunkLists(store.blobs)', (s): s is ChunkListStore => hasChunkLists(s.blobs), (store) => {
    test('an absent blob has no chunk list', async () => {
      const { blobs } = store()
      assert.equal(await blobs.chunks(b3(Buffer.from('never stored'))), undefined)
    })

    test('a malformed digest is an InvalidInputError', async () => {
      await assert.rejects(store().blobs.chunks(new Uint8Array(31)), InvalidInputError)
    })

    for (const [what, size] of [
      ['a small blob', 12],
      ['a 3 MiB blob', 3 * 1024 * 1024 + 3],
    ] as const) {
      test(`${what}: its chunks, if listed, are its bytes in order, each readable by its digest`, async () => {
        const { blobs } = store()
        const data = randomBytes(size, size)
        const { digest } = await blobs.put(pieces(data, 100_000))
        const chunks = await blobs.chunks(digest)
        assert.ok(chunks, 'a stored blob has a chunk list')
        let at = 0
        for (const c of chunks) {
          const bytes = data.subarray(at, at + c.size)
          assert.equal(toHex(c.digest), toHex(b3(bytes)), `chunk at ${at}`)
          assert.ok((await readAll((await blobs.open(c.digest))!)).equals(bytes), `chunk at ${at} reads back`)
          at += c.size
        }
        if (chunks.length > 0) assert.equal(at, data.length)
      })
    }
  })
}

/** Referrers (PathInfoService.referrers): the stored paths whose references include one. */
export function describeReferrers(name: string, open: OpenStore): void {
  describeCapability(`${name}: referrers contract`, open, 'hasReferrers(store.pathInfos)', (s): s is ReferrersStore => hasReferrers(s.pathInfos), (store) => {
    test('referrers of a path are the paths that refer to it, itself included when it refers to itself', async () => {
      const { pathInfos } = store()
      const names = (infos: PathInfo[]) => infos.map(baseNameOf).sort()
      const leaf = await pathInfos.put(syntheticPath('ref-leaf'))
      const left = await pathInfos.put(syntheticPath('ref-left', [leaf]))
      const self = await pathInfos.put(syntheticPath('ref-self', [leaf, syntheticPath('ref-self')]))
      const top = await pathInfos.put(syntheticPath('ref-top', [left, self]))
      assert.deepEqual(names(await pathInfos.referrers(digestOf(leaf))), names([left, self]))
      assert.deepEqual(names(await pathInfos.referrers(digestOf(self))), names([self, top]))
      assert.deepEqual(await pathInfos.referrers(digestOf(top)), [])
      assert.deepEqual(await pathInfos.referrers(digestOf(syntheticPath('ref-never-put'))), [])
    })

    test('a refused put adds no referrer', async () => {
      const { pathInfos } = store()
      const leaf = await pathInfos.put(syntheticPath('refused-leaf'))
      await pathInfos.put(syntheticPath('refused-top', [], '/first'))
      await assert.rejects(pathInfos.put(syntheticPath('refused-top', [leaf], '/second')), AlreadyExistsError)
      assert.deepEqual(await pathInfos.referrers(digestOf(leaf)), [])
    })
  })
}

/** Adding signatures (PathInfoService.addSignatures): the one change a stored PathInfo may undergo. */
export function describeSignatureAdding(name: string, open: OpenStore): void {
  describeCapability(`${name}: signature adding contract`, open, 'canAddSignatures(store)', (s): s is SigningStore => canAddSignatures(s), (store) => {
    const sig = (keyName: string, fill: number): Signature => ({ name: keyName, data: new Uint8Array(64).fill(fill) })

    test('concurrent additions all land, each once, and nothing else changes', async () => {
      const { pathInfos } = store()
      const leaf = await pathInfos.put(syntheticPath('sig-leaf'))
      const top = await pathInfos.put(syntheticPath('sig-top', [leaf]))
      const sigs = [1, 2, 3, 4, 5].map((i) => sig(`k-${i}`, i))
      await Promise.all(sigs.map((s) => pathInfos.addSignatures(digestOf(top), [s, sigs[0]!])))
      const stored = (await pathInfos.get(digestOf(top)))!
      assert.deepEqual(stored.narinfo!.signatures.map((s) => s.name).sort(), ['k-1', 'k-2', 'k-3', 'k-4', 'k-5'])
      const unsigned = (i: PathInfo) => Buffer.from(encodePathInfo({ ...i, narinfo: { ...i.narinfo!, signatures: [] } }))
      assert.deepEqual(unsigned(stored), unsigned(top))
      // Again: what is stored comes back unchanged.
      assert.deepEqual(await pathInfos.addSignatures(digestOf(top), [sigs[2]!]), stored)
      // Its referrers still find it.
      if (hasReferrers(pathInfos)) assert.deepEqual((await pathInfos.referrers(digestOf(leaf))).map(baseNameOf), [baseNameOf(top)])
    })

    test('an absent path gains nothing', async () => {
      assert.equal(await store().pathInfos.addSignatures(digestOf(syntheticPath('sig-never-put')), [sig('k-1', 1)]), undefined)
      assert.equal(await store().pathInfos.get(digestOf(syntheticPath('sig-never-put'))), undefined)
    })
  })
}
