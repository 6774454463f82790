import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { readAll } from '../../src/castore/blob-service.js'
import { EMPTY_DIGEST, b3, toHex } from '../../src/castore/digest.js'
import { type Directory, directoryDigest } from '../../src/castore/directory.js'
import { decodePathInfo, encodeDirectory, encodePathInfo } from '../../src/proto/codec.js'
import type { Store } from '../../src/store/store.js'
import { randomBytes } from '../helpers/trees.js'

const dirOf = (p: Partial<Directory>): Directory => ({ directories: [], files: [], symlinks: [], ...p })
const dnode = (name: string, digest: Uint8Array, size: number) => ({ kind: 'directory' as const, name: Buffer.from(name), digest, size })

// SPEC 2.4 / 3.7: B = {a -> empty}, D = {a -> empty, b -> B}.
const EMPTY = dirOf({})
const B = dirOf({ directories: [dnode('a', EMPTY_DIGEST, 0)] })
const D = dirOf({ directories: [dnode('a', EMPTY_DIGEST, 0), dnode('b', directoryDigest(B), 1)] })

const PATHINFO_HW = Buffer.from(
  '0a4b12490a23697836796b6764726b346d3964666c307a6c343864306e7238386730327278712d6877' +
    '12205ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c180c' +
    '1a49088001122003e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040' +
    '3222122003e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040',
  'hex',
)

/** One behaviour for every backend: the suite each backend must pass. */
export function describeStore(name: string, open: () => Promise<Store>, cleanup: () => Promise<void> = async () => {}) {
  describe(`${name} store contract`, () => {
    let store: Store
    before(async () => {
      store = await open()
    })
    after(async () => {
      await store.close()
      await cleanup()
    })

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

    test('path info: refused while its blob is missing, then put / get / list', async () => {
      const info = decodePathInfo(PATHINFO_HW)
      await assert.rejects(store.pathInfos.put(info), /not stored/)
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
  })
}
