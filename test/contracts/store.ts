import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { readAll } from '../../src/castore/blob-service.js'
import { EMPTY_DIGEST, b3, toHex } from '../../src/castore/digest.js'
import { directoryDigest } from '../../src/castore/directory.js'
import { encodeDirectory } from '../../src/castore/proto.js'
import { decodePathInfo, encodePathInfo } from '../../src/store/proto.js'
import { AlreadyExistsError, InvalidInputError } from '../../src/errors.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { Store } from '../../src/store/store.js'
import { randomBytes } from '../helpers/trees.js'
import { B, D, EMPTY, HW_BASENAME, PATHINFO_HW, dirOf, dnode, fileInfo, fnode, madeUp, symlinkInfo , storeForSuite } from './path-info-fixtures.js'

/** One behaviour for every backend: the suite each backend must pass. */
export function describeStore(name: string, open: () => Promise<Store>, cleanup: () => Promise<void> = async () => {}) {
  describe(`${name} store contract`, () => {
    let store: Store
    storeForSuite(open, cleanup, (s) => (store = s))

    test('blob put / has / open round trip, streaming', async () => {
      const data = randomBytes(3 * 1024 * 1024 + 17, 1)
      async function* chunks() {
        for (let i = 0; i < data.length; i += 100_000) yield data.subarray(i, i + 100_000)
      }
      const info = await store.blobs.put(chunks())
      assert.equal(toHex(info.digest), toHex(b3(data)))
      assert.equal(info.size, data.length)
      assert.ok(await store.blobs.has(info.digest))
      assert.deepEqual(await readAll((await store.blobs.open(info.digest))!), data)
      // Idempotent.
      assert.equal(toHex((await store.blobs.put(data)).digest), toHex(info.digest))
    })

    test('empty blob', async () => {
      const info = await store.blobs.put(new Uint8Array(0))
      assert.equal(toHex(info.digest), toHex(EMPTY_DIGEST))
      assert.equal((await readAll((await store.blobs.open(EMPTY_DIGEST))!)).length, 0)
    })

    test('absent blob is undefined, not an error', async () => {
      const d = b3(Buffer.from('never stored'))
      assert.equal(await store.blobs.has(d), false)
      assert.equal(await store.blobs.open(d), undefined)
    })

    test('a staged blob is invisible until commit, gone after abort', async () => {
      const s1 = store.blobs.stage()
      const a = await s1.put(Buffer.from('staged then committed'))
      assert.equal(await store.blobs.has(a.digest), false)
      await s1.commit()
      assert.ok(await store.blobs.has(a.digest))

      const s2 = store.blobs.stage()
      const b = await s2.put(Buffer.from('staged then aborted'))
      await s2.abort()
      assert.equal(await store.blobs.has(b.digest), false)
    })

    test('directory closure: put leaves first, get, BFS closure without duplicates', async () => {
      const root = await store.directories.putClosure([EMPTY, B, D])
      assert.equal(toHex(root), toHex(directoryDigest(D)))
      const got = []
      for await (const d of store.directories.getClosure(root)) got.push(toHex(directoryDigest(d)))
      assert.deepEqual(got, [D, EMPTY, B].map((d) => toHex(directoryDigest(d))))
      assert.deepEqual(encodeDirectory((await store.directories.get(directoryDigest(B)))!), encodeDirectory(B))
    })

    test('directory closure rejects children not sent first, wrong sizes, disconnected sets, nothing', async () => {
      const digestD = toHex(directoryDigest(D))
      const unknown = dirOf({ directories: [dnode('x', b3(Buffer.from('no such directory')), 0)] })
      await assert.rejects(store.directories.putClosure([unknown]), /neither sent before it nor stored/)
      const wrongSize = dirOf({ directories: [dnode('b', directoryDigest(B), 2)] })
      await assert.rejects(store.directories.putClosure([EMPTY, B, wrongSize]), /claims size 2/)
      await assert.rejects(store.directories.putClosure([EMPTY, dirOf({ files: [{ kind: 'file', name: Buffer.from('x'), digest: EMPTY_DIGEST, size: 0, executable: false }] })]), /not connected/)
      await assert.rejects(store.directories.putClosure([]), /empty/)
      void digestD
    })

    test('a closure may refer to Directories already stored (only the new ones are sent)', async () => {
      await store.directories.putClosure([EMPTY, B])
      const top = dirOf({ directories: [dnode('b', directoryDigest(B), 1)] })
      assert.equal(toHex(await store.directories.putClosure([top])), toHex(directoryDigest(top)))
    })

    test('absent directory: get undefined, closure empty', async () => {
      const d = b3(Buffer.from('no such dir'))
      assert.equal(await store.directories.get(d), undefined)
      const got = []
      for await (const x of store.directories.getClosure(d)) got.push(x)
      assert.equal(got.length, 0)
    })

    test('path info: put / get / list', async () => {
      const info = decodePathInfo(PATHINFO_HW)
      await store.blobs.put(Buffer.from('Hello World!'))
      await store.pathInfos.put(info)
      const digest = Buffer.from('b867011e42d9828608fd80ba962a99b9bde94d8f', 'hex')
      assert.deepEqual(encodePathInfo((await store.pathInfos.get(digest))!), encodePathInfo(info))
      assert.equal(await store.pathInfos.get(new Uint8Array(20)), undefined)
      const listed = []
      for await (const i of store.pathInfos.list()) listed.push(i)
      assert.equal(listed.length, 1)
    })

    test('path info: invalid ones are refused', async () => {
      const info = decodePathInfo(PATHINFO_HW)
      info.node = { ...info.node, name: Buffer.from('not-a-store-path') }
      await assert.rejects(store.pathInfos.put(info), /invalid PathInfo/)
    })

    test('path info: the same content again returns what is stored (signatures not merged); different content is refused', async () => {
      const hw = decodePathInfo(PATHINFO_HW)
      await store.blobs.put(Buffer.from('Hello World!'))
      await store.pathInfos.put(hw)
      const again = decodePathInfo(PATHINFO_HW)
      again.narinfo!.signatures.push({ name: 'cache.example.org-1', data: new Uint8Array(64).fill(7) })
      assert.deepEqual(encodePathInfo(await store.pathInfos.put(again)), PATHINFO_HW)

      await store.blobs.put(Buffer.from('Hello World?'))
      const other = fileInfo(HW_BASENAME, 'Hello World?')
      await assert.rejects(store.pathInfos.put(other), (e) => e instanceof AlreadyExistsError && /'\/nix\/store\/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw' is already in the store with different content/.test(e.message))
      const lyingNar = decodePathInfo(PATHINFO_HW)
      lyingNar.narinfo!.narSha256 = new Uint8Array(32).fill(1)
      await assert.rejects(store.pathInfos.put(lyingNar), AlreadyExistsError)
      const moreRefs = decodePathInfo(PATHINFO_HW)
      moreRefs.references = [moreRefs.references, nixbase32.decode(HW_BASENAME.slice(0, 32))].flat()
      moreRefs.narinfo!.referenceNames = [HW_BASENAME]
      await assert.rejects(store.pathInfos.put(moreRefs), AlreadyExistsError)
      assert.deepEqual(encodePathInfo((await store.pathInfos.get(nixbase32.decode(HW_BASENAME.slice(0, 32))))!), PATHINFO_HW)
    })

    test('path info: of concurrent puts of one path with different content, exactly one is stored', async () => {
      for (let round = 0; round < 8; round++) {
        const puts = ['a', 'b', 'c'].map((t) => store.pathInfos.put(symlinkInfo(`race-${round}`, `target-${t}`)))
        const results = await Promise.allSettled(puts)
        const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
        assert.equal(won.length, 1, `round ${round}: ${won.length} puts succeeded`)
        for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof AlreadyExistsError, String(r.reason))
        const stored = await store.pathInfos.get(nixbase32.decode(madeUp(`race-${round}`).slice(0, 32)))
        assert.deepEqual(encodePathInfo(stored!), encodePathInfo(won[0]!))
      }
    })

    // Whether references, trees and content addresses check out is publishPathInfo's job: contracts/publish.ts.
    test('path info: each reference listed once', async () => {
      const dup = symlinkInfo('dup-ref', 't', Array(300).fill(madeUp('self-ref')))
      await assert.rejects(store.pathInfos.put(dup), (e) => e instanceof InvalidInputError && /reference 1 .* is listed twice/.test(e.message))
      assert.equal(await store.pathInfos.get(nixbase32.decode(madeUp('dup-ref').slice(0, 32))), undefined)
    })

    test('sizes: a Directory file entry must claim its stored blob\'s size (absent blobs may come later)', async () => {
      await store.blobs.put(Buffer.from('Hello World!'))
      const lying = dirOf({ files: [fnode('a', 'Hello World!', 5)] })
      await assert.rejects(store.directories.putClosure([lying]), /file "a" claims 5 bytes, but blob b3:\S+ has 12/)
      assert.equal(await store.directories.get(directoryDigest(lying)), undefined)
      const early = dirOf({ files: [fnode('x', 'twelve bytes', 5)] })
      await store.directories.putClosure([early])
    })
  })
}
