import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { createHash } from 'node:crypto'
import { readAll } from '../../src/castore/blob-service.js'
import { EMPTY_DIGEST, b3, toHex } from '../../src/castore/digest.js'
import { type Directory, directoryDigest } from '../../src/castore/directory.js'
import { encodeDirectory } from '../../src/castore/proto.js'
import { decodePathInfo, encodePathInfo } from '../../src/store/proto.js'
import { AlreadyExistsError, InvalidInputError, MissingDataError } from '../../src/errors.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import { CaHash, type PathInfo } from '../../src/store/path-info.js'
import { makeSourcePath } from '../../src/store/store-path.js'
import type { Store } from '../../src/store/store.js'
import { nar, regular, toks } from '../helpers/nar.js'
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

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest()
const fnode = (name: string, content: string, size = Buffer.byteLength(content)) => ({
  kind: 'file' as const,
  name: Buffer.from(name),
  digest: b3(Buffer.from(content)),
  size,
  executable: false,
})

/** A PathInfo for `basename` with NAR metadata of a file holding `content` (right or wrong, as the test needs). */
function fileInfo(basename: string, content: string, p: { size?: number; references?: string[]; ca?: { type: CaHash; digest: Uint8Array }; nar?: Buffer } = {}): PathInfo {
  const n = p.nar ?? nar(regular(content))
  const refs = p.references ?? []
  return {
    node: fnode(basename, content, p.size),
    references: refs.map((r) => nixbase32.decode(r.slice(0, 32))),
    narinfo: { narSize: n.length, narSha256: sha256(n), signatures: [], referenceNames: refs, ca: p.ca },
  }
}

/** A made-up (input-addressed) store path basename for `tag`. */
const madeUp = (tag: string) => `${nixbase32.encode(sha256(tag).subarray(0, 20))}-${tag}`

/** A symlink PathInfo at a made-up path: needs no castore data at all. */
function symlinkInfo(tag: string, target: string, references: string[] = []): PathInfo {
  const n = nar(toks('(', 'type', 'symlink', 'target', target, ')'))
  return {
    node: { kind: 'symlink', name: Buffer.from(madeUp(tag)), target: Buffer.from(target) },
    references: references.map((r) => nixbase32.decode(r.slice(0, 32))),
    narinfo: { narSize: n.length, narSha256: sha256(n), signatures: [], referenceNames: references },
  }
}

const HW_BASENAME = 'ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'

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
      await assert.rejects(store.pathInfos.put(info), /does not have: blob/)
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

    test('path info: references must be stored (a self-reference is fine) and listed once', async () => {
      const absent = madeUp('absent')
      await assert.rejects(
        store.pathInfos.put(symlinkInfo('dangling-ref', 't', [absent])),
        (e) => e instanceof MissingDataError && e.message === `PathInfo refers to a path the store does not have: /nix/store/${absent}`,
      )
      await store.pathInfos.put(symlinkInfo('self-ref', 't', [madeUp('self-ref')]))
      await store.pathInfos.put(symlinkInfo('good-ref', 't', [madeUp('self-ref')]))
      const dup = symlinkInfo('dup-ref', 't', Array(300).fill(madeUp('self-ref')))
      await assert.rejects(store.pathInfos.put(dup), (e) => e instanceof InvalidInputError && /reference 1 .* is listed twice/.test(e.message))
      assert.equal(await store.pathInfos.get(nixbase32.decode(madeUp('dup-ref').slice(0, 32))), undefined)
    })

    test('path info: a content-addressed path is the one its CA gives, with the NAR its tree renders to', async () => {
      await store.blobs.put(Buffer.from('Hello World!'))
      await store.blobs.put(Buffer.from('bar'))
      // SPEC 4.5, all from Nix 2.8: toFile "foo" "bar", a text file referring to hw, and --add-fixed sha256 hw.
      await store.pathInfos.put(fileInfo('vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo', 'bar', { ca: { type: CaHash.TEXT_SHA256, digest: sha256('bar') } }))
      const withref = `see /nix/store/${HW_BASENAME}\n`
      await store.blobs.put(Buffer.from(withref))
      await store.pathInfos.put(
        fileInfo('bcf47ak9glxc5ra4mzi9wsmbmnlawy21-withref', withref, { references: [HW_BASENAME], ca: { type: CaHash.TEXT_SHA256, digest: sha256(withref) } }),
      )
      const flat = { type: CaHash.FLAT_SHA256, digest: sha256('Hello World!') }
      await store.pathInfos.put(fileInfo('hwrcvy892c274zsg10d1xjfhpn3ig5k8-hw', 'Hello World!', { ca: flat }))

      // The same CA under a path it does not give.
      await assert.rejects(store.pathInfos.put(fileInfo(madeUp('hw'), 'Hello World!', { ca: flat })), /is not the store path its content address gives/)
      // A made-up NAR hash, and the source path computed from it: the tree does not render to it.
      const fake = sha256('not the NAR of anything')
      const liar = fileInfo(`${nixbase32.encode(makeSourcePath(fake, 'liar').digest)}-liar`, 'Hello World!')
      liar.narinfo!.narSha256 = fake
      liar.narinfo!.ca = { type: CaHash.NAR_SHA256, digest: fake }
      await assert.rejects(store.pathInfos.put(liar), /the tree's NAR has hash sha256:\S+ and size 128, not the sha256:\S+ and 128 given/)
      // A flat CA over a digest that is not the file's.
      const wrongFlat = { type: CaHash.FLAT_SHA256, digest: sha256('Hello World?') }
      await assert.rejects(store.pathInfos.put(fileInfo('hwrcvy892c274zsg10d1xjfhpn3ig5k8-hw'.replace(/^.{32}/, '0'.repeat(32)), 'Hello World!', { ca: wrongFlat })), /content address/)
    })

    test('sizes: a Directory file entry must claim its stored blob\'s size (absent blobs may come later); a PathInfo needs them all right', async () => {
      await store.blobs.put(Buffer.from('Hello World!'))
      const lying = dirOf({ files: [fnode('a', 'Hello World!', 5)] })
      await assert.rejects(store.directories.putClosure([lying]), /file "a" claims 5 bytes, but blob b3:\S+ has 12/)
      assert.equal(await store.directories.get(directoryDigest(lying)), undefined)

      // Accepted while the blob is absent; the PathInfo is refused once the blob shows its real size.
      const later = 'twelve bytes'
      const early = dirOf({ files: [fnode('x', later, 5)] })
      await store.directories.putClosure([early])
      const name = madeUp('early')
      const dirInfo = (size: number): PathInfo => ({
        node: { kind: 'directory', name: Buffer.from(name), digest: directoryDigest(early), size },
        references: [],
        narinfo: { narSize: 1, narSha256: new Uint8Array(32), signatures: [], referenceNames: [] },
      })
      await assert.rejects(store.pathInfos.put(dirInfo(1)), (e) => e instanceof MissingDataError && /does not have: blob b3:/.test(e.message))
      await store.blobs.put(Buffer.from(later))
      await assert.rejects(store.pathInfos.put(dirInfo(1)), /file "x" claims 5 bytes, but blob b3:\S+ has 12/)
      await assert.rejects(store.pathInfos.put(dirInfo(2)), /root node claims size 2, but directory b3:\S+ has 1/)
      await assert.rejects(store.pathInfos.put(fileInfo(madeUp('big'), 'Hello World!', { size: 999999 })), /claims 999999 bytes, but blob b3:\S+ has 12/)
      assert.equal(await store.pathInfos.get(nixbase32.decode(name.slice(0, 32))), undefined)
    })
  })
}
