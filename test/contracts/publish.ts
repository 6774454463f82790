import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { directoryDigest } from '../../src/castore/directory.js'
import { AlreadyExistsError, InvalidInputError, MissingDataError } from '../../src/errors.js'
import { publishPathInfo } from '../../src/ops/publish.js'
import { decodePathInfo, encodePathInfo } from '../../src/store/proto.js'
import { CaHash, type PathInfo } from '../../src/store/path-info.js'
import { makeSourcePath } from '../../src/store/store-path.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { Store } from '../../src/store/store.js'
import { HW_BASENAME, PATHINFO_HW, dirOf, digestOf, fileInfo, fnode, madeUp, sha256, symlinkInfo , storeForSuite } from './path-info-fixtures.js'

/**
 * The admission rule, one for every store however its services are
 * composed: publishPathInfo makes a PathInfo visible only when its whole
 * tree and its references are stored and its content address holds, and
 * what it refuses leaves no PathInfo. Errors are asserted by class (their
 * `code`), not wording.
 */
export function describePublish(name: string, open: () => Promise<Store>, cleanup: () => Promise<void> = async () => {}) {
  describe(`${name}: publishPathInfo admission`, () => {
    let store: Store
    storeForSuite(open, cleanup, (s) => (store = s))
    const absent = async (basename: string) => assert.equal(await store.pathInfos.get(digestOf(basename)), undefined, `${basename} was stored`)

    test('refused while its blob is missing (MissingDataError), published once it is stored', async () => {
      const info = decodePathInfo(PATHINFO_HW)
      await assert.rejects(publishPathInfo(store, info), MissingDataError)
      await absent(HW_BASENAME)
      await store.blobs.put(Buffer.from('Hello World!'))
      assert.deepEqual(encodePathInfo(await publishPathInfo(store, info)), PATHINFO_HW)
      assert.deepEqual(encodePathInfo((await store.pathInfos.get(digestOf(HW_BASENAME)))!), PATHINFO_HW)
    })

    test('the same content again answers what is stored; other content is AlreadyExistsError', async () => {
      await store.blobs.put(Buffer.from('Hello World!'))
      await publishPathInfo(store, decodePathInfo(PATHINFO_HW))
      const again = decodePathInfo(PATHINFO_HW)
      again.narinfo!.signatures.push({ name: 'cache.example.org-1', data: new Uint8Array(64).fill(7) })
      assert.deepEqual(encodePathInfo(await publishPathInfo(store, again)), PATHINFO_HW)
      await store.blobs.put(Buffer.from('Hello World?'))
      await assert.rejects(publishPathInfo(store, fileInfo(HW_BASENAME, 'Hello World?')), AlreadyExistsError)
      assert.deepEqual(encodePathInfo((await store.pathInfos.get(digestOf(HW_BASENAME)))!), PATHINFO_HW)
    })

    test('the whole tree, not only its root: a Directory or blob missing deep down is MissingDataError', async () => {
      // leaf/ holds a file whose blob is absent; the root Directory and leaf/ are both stored.
      const leaf = dirOf({ files: [fnode('f', 'deep blob')] })
      const root = dirOf({ directories: [{ kind: 'directory', name: Buffer.from('leaf'), digest: directoryDigest(leaf), size: 1 }] })
      await store.directories.putClosure([leaf, root])
      const name = madeUp('deep')
      const info: PathInfo = {
        node: { kind: 'directory', name: Buffer.from(name), digest: directoryDigest(root), size: 2 },
        references: [],
        narinfo: { narSize: 1, narSha256: new Uint8Array(32), signatures: [], referenceNames: [] },
      }
      await assert.rejects(publishPathInfo(store, info), MissingDataError)
      await absent(name)
      await store.blobs.put(Buffer.from('deep blob'))
      await publishPathInfo(store, info)
      assert.ok(await store.pathInfos.get(digestOf(name)))
    })

    test('sizes: every file must claim its blob\'s size, the root node its Directory\'s (InvalidInputError)', async () => {
      const later = 'twelve bytes'
      const early = dirOf({ files: [fnode('x', later, 5)] })
      await store.directories.putClosure([early])
      const name = madeUp('early')
      const dirInfo = (size: number): PathInfo => ({
        node: { kind: 'directory', name: Buffer.from(name), digest: directoryDigest(early), size },
        references: [],
        narinfo: { narSize: 1, narSha256: new Uint8Array(32), signatures: [], referenceNames: [] },
      })
      await assert.rejects(publishPathInfo(store, dirInfo(1)), MissingDataError)
      await store.blobs.put(Buffer.from(later))
      await assert.rejects(publishPathInfo(store, dirInfo(1)), InvalidInputError)
      await assert.rejects(publishPathInfo(store, dirInfo(2)), InvalidInputError)
      await store.blobs.put(Buffer.from('Hello World!'))
      await assert.rejects(publishPathInfo(store, fileInfo(madeUp('big'), 'Hello World!', { size: 999999 })), InvalidInputError)
      await absent(name)
      await absent(madeUp('big'))
    })

    test('references must be stored paths (MissingDataError); a self-reference is fine', async () => {
      await assert.rejects(publishPathInfo(store, symlinkInfo('dangling-ref', 't', [madeUp('absent')])), MissingDataError)
      await absent(madeUp('dangling-ref'))
      await publishPathInfo(store, symlinkInfo('self-ref', 't', [madeUp('self-ref')]))
      await publishPathInfo(store, symlinkInfo('good-ref', 't', [madeUp('self-ref')]))
      assert.ok(await store.pathInfos.get(digestOf(madeUp('good-ref'))))
    })

    test('a content-addressed path is the one its CA gives, with the NAR its tree renders to (InvalidInputError)', async () => {
      await store.blobs.put(Buffer.from('Hello World!'))
      await store.blobs.put(Buffer.from('bar'))
      // SPEC 4.5, all from Nix 2.8: toFile "foo" "bar", a text file referring to hw, and --add-fixed sha256 hw.
      await publishPathInfo(store, decodePathInfo(PATHINFO_HW))
      await publishPathInfo(store, fileInfo('vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo', 'bar', { ca: { type: CaHash.TEXT_SHA256, digest: sha256('bar') } }))
      const withref = `see /nix/store/${HW_BASENAME}\n`
      await store.blobs.put(Buffer.from(withref))
      await publishPathInfo(
        store,
        fileInfo('bcf47ak9glxc5ra4mzi9wsmbmnlawy21-withref', withref, { references: [HW_BASENAME], ca: { type: CaHash.TEXT_SHA256, digest: sha256(withref) } }),
      )
      const flat = { type: CaHash.FLAT_SHA256, digest: sha256('Hello World!') }
      await publishPathInfo(store, fileInfo('hwrcvy892c274zsg10d1xjfhpn3ig5k8-hw', 'Hello World!', { ca: flat }))

      // The same CA under a path it does not give.
      await assert.rejects(publishPathInfo(store, fileInfo(madeUp('hw'), 'Hello World!', { ca: flat })), InvalidInputError)
      // A made-up NAR hash, and the source path computed from it: the tree does not render to it.
      const fake = sha256('not the NAR of anything')
      const liarName = `${nixbase32.encode(makeSourcePath(fake, 'liar').digest)}-liar`
      const liar = fileInfo(liarName, 'Hello World!')
      liar.narinfo!.narSha256 = fake
      liar.narinfo!.ca = { type: CaHash.NAR_SHA256, digest: fake }
      await assert.rejects(publishPathInfo(store, liar), InvalidInputError)
      // A flat CA over a digest that is not the file's.
      const wrongFlat = { type: CaHash.FLAT_SHA256, digest: sha256('Hello World?') }
      const wrongName = 'hwrcvy892c274zsg10d1xjfhpn3ig5k8-hw'.replace(/^.{32}/, '0'.repeat(32))
      await assert.rejects(publishPathInfo(store, fileInfo(wrongName, 'Hello World!', { ca: wrongFlat })), InvalidInputError)
      for (const n of [madeUp('hw'), liarName, wrongName]) await absent(n)
    })
  })
}
