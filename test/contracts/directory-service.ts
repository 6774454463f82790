import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { EMPTY_DIGEST, b3, toHex } from '../../src/castore/digest.js'
import { type Directory, directoryDigest } from '../../src/castore/directory.js'
import { encodeDirectory } from '../../src/castore/proto.js'
import { InvalidInputError } from '../../src/errors.js'
import { canon, freshStore, type OpenStore } from './harness.js'

const dirOf = (p: Partial<Directory>): Directory => ({ directories: [], files: [], symlinks: [], ...p })
const dnode = (name: string, digest: Uint8Array, size: number) => ({ kind: 'directory' as const, name: Buffer.from(name), digest, size })
const fnode = (name: string, content: string, size = Buffer.byteLength(content)) => ({
  kind: 'file' as const,
  name: Buffer.from(name),
  digest: b3(Buffer.from(content)),
  size,
  executable: false,
})
const hex = (d: Directory) => toHex(directoryDigest(d))

// SPEC 2.4 / 3.7: B = {a -> empty}, D = {a -> empty, b -> B}.
const EMPTY = dirOf({})
const B = dirOf({ directories: [dnode('a', EMPTY_DIGEST, 0)] })
const D = dirOf({ directories: [dnode('a', EMPTY_DIGEST, 0), dnode('b', directoryDigest(B), 1)] })

const invalid = (e: unknown) => e instanceof InvalidInputError

/** What every DirectoryService must do (castore/directory-service.ts). */
export function describeDirectoryService(name: string, open: OpenStore): void {
  describe(`${name}: DirectoryService contract`, () => {
    const store = freshStore(open)

    test('putClosure takes leaves first and returns the root; get and a breadth-first getClosure give each Directory once', async () => {
      const { directories } = store()
      const root = await directories.putClosure([EMPTY, B, D])
      assert.equal(toHex(root), hex(D))
      const got: string[] = []
      for await (const d of directories.getClosure(root)) got.push(hex(d))
      assert.deepEqual(got, [D, EMPTY, B].map(hex))
      assert.deepEqual(canon(await directories.get(directoryDigest(B))), canon(B))
    })

    test('a closure may refer to Directories already stored, and the same closure again is fine', async () => {
      const { directories } = store()
      await directories.putClosure([EMPTY, B])
      const top = dirOf({ directories: [dnode('b', directoryDigest(B), 1)] })
      assert.equal(toHex(await directories.putClosure([top])), hex(top))
      assert.equal(toHex(await directories.putClosure([EMPTY, B, top])), hex(top))
    })

    test('an absent Directory: get is undefined, getClosure empty', async () => {
      const { directories } = store()
      const d = b3(Buffer.from('no such dir'))
      assert.equal(await directories.get(d), undefined)
      const got = []
      for await (const x of directories.getClosure(d)) got.push(x)
      assert.equal(got.length, 0)
    })

    test('a malformed digest is an InvalidInputError, not an absent Directory', async () => {
      const { directories } = store()
      await assert.rejects(directories.get(new Uint8Array(31)), invalid)
      await assert.rejects(async () => {
        for await (const _ of directories.getClosure(new Uint8Array(33))) void _
      }, invalid)
    })

    test('refused with InvalidInputError, nothing stored: a child neither sent nor stored, a wrong child size, a disconnected set, nothing at all, an invalid Directory', async () => {
      const { directories } = store()
      const unknown = dirOf({ directories: [dnode('x', b3(Buffer.from('no such directory')), 0)] })
      await assert.rejects(directories.putClosure([unknown]), invalid)
      const wrongSize = dirOf({ directories: [dnode('b', directoryDigest(B), 2)] })
      await assert.rejects(directories.putClosure([EMPTY, B, wrongSize]), invalid)
      const loose = dirOf({ symlinks: [{ kind: 'symlink', name: Buffer.from('loose'), target: Buffer.from('t') }] })
      await assert.rejects(directories.putClosure([loose, dirOf({ files: [fnode('x', '')] })]), invalid)
      await assert.rejects(directories.putClosure([]), invalid)
      const unsorted = dirOf({ files: [fnode('b', ''), fnode('a', '')] })
      await assert.rejects(directories.putClosure([unsorted]), invalid)
      for (const d of [unknown, wrongSize, loose, unsorted]) assert.equal(await directories.get(directoryDigest(d)), undefined)
    })

    test('a file entry must claim its stored blob\'s size (InvalidInputError); an absent blob may come later', async () => {
      const { blobs, directories } = store()
      await blobs.put(Buffer.from('Hello World!'))
      const lying = dirOf({ files: [fnode('a', 'Hello World!', 5)] })
      await assert.rejects(directories.putClosure([lying]), invalid)
      assert.equal(await directories.get(directoryDigest(lying)), undefined)
      const early = dirOf({ files: [fnode('x', 'not stored yet', 5)] })
      assert.equal(toHex(await directories.putClosure([early])), hex(early))
    })

    test('concurrent puts of one closure all succeed', async () => {
      const { directories } = store()
      const leaf = dirOf({ symlinks: [{ kind: 'symlink', name: Buffer.from('l'), target: Buffer.from('concurrent') }] })
      const top = dirOf({ directories: [dnode('d', directoryDigest(leaf), 1)] })
      const roots = await Promise.all([1, 2, 3, 4].map(() => directories.putClosure([leaf, top])))
      for (const r of roots) assert.equal(toHex(r), hex(top))
      assert.deepEqual(canon(await directories.get(directoryDigest(top))), canon(top))
    })

    test('a stage is invisible until commit, gone after abort', async () => {
      const { directories } = store()
      const staged = dirOf({ symlinks: [{ kind: 'symlink', name: Buffer.from('s'), target: Buffer.from('committed') }] })
      const s1 = directories.stage()
      await s1.put(directoryDigest(staged), encodeDirectory(staged))
      assert.equal(await directories.get(directoryDigest(staged)), undefined)
      await s1.commit()
      assert.deepEqual(canon(await directories.get(directoryDigest(staged))), canon(staged))

      const dropped = dirOf({ symlinks: [{ kind: 'symlink', name: Buffer.from('s'), target: Buffer.from('aborted') }] })
      const s2 = directories.stage()
      await s2.put(directoryDigest(dropped), encodeDirectory(dropped))
      await s2.abort()
      assert.equal(await directories.get(directoryDigest(dropped)), undefined)
    })
  })
}
