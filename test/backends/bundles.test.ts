/**
 * Small blobs of one stage commit in one bundle file (local format v4):
 * imports and NAR ingests give the store paths and NARs Nix gives, a
 * version 3 store is read and upgraded, gc deletes and compacts bundles
 * (also against a racing writer that dedups against a member), verify
 * checks every member and repair removes a corrupt one.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { collectGarbage } from '../../src/backends/local/gc.js'
import { type LocalStore, openLocalStore } from '../../src/backends/local/index.js'
import { verifyStore } from '../../src/backends/local/verify.js'
import { iterateSource, readAll } from '../../src/castore/blob-service.js'
import { b3 } from '../../src/castore/digest.js'
import { directoryFromEntries } from '../../src/castore/directory.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importNar } from '../../src/ops/import-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import { parseStorePathArg } from '../../src/store/store-path.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { randomBytes } from '../helpers/trees.js'

const SKIP = nixMissing()
let tmp: string
let nix: NixStore
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bundles-'))
  nix = new NixStore(path.join(tmp, 'nix'))
})
after(() => fs.rmSync(tmp, { recursive: true, force: true }))

let n = 0
const scratch = () => fs.mkdtempSync(path.join(tmp, `s${n++}-`))

/** A tree of `count` small files named `<prefix><i>` (contents from `content(i)`), plus copies, empty files and an executable. */
function smallTree(count: number, content: (i: number) => string | Buffer, extra = true): string {
  const dir = scratch()
  fs.mkdirSync(path.join(dir, 'sub'))
  for (let i = 0; i < count; i++) fs.writeFileSync(path.join(dir, i % 3 === 0 ? 'sub' : '', `f${i}`), content(i))
  if (extra) {
    fs.writeFileSync(path.join(dir, 'copy-a'), content(5))
    fs.writeFileSync(path.join(dir, 'sub', 'copy-b'), content(5))
    fs.writeFileSync(path.join(dir, 'empty'), '')
    fs.writeFileSync(path.join(dir, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 })
    fs.symlinkSync('f1', path.join(dir, 'link'))
  }
  return dir
}

const bundles = (root: string) => (fs.existsSync(path.join(root, 'blobs', 'bundles')) ? fs.readdirSync(path.join(root, 'blobs', 'bundles')).filter((f) => f.endsWith('.bundle')).sort() : [])
const plainBlobs = (root: string) => (fs.readdirSync(path.join(root, 'blobs', 'b3'), { recursive: true }) as string[]).filter((f) => /[0-9a-f]{64}$/.test(f))

async function narOf(store: LocalStore, p: string): Promise<Buffer> {
  return readAll(await exportNar(store, p))
}

async function assertClean(store: LocalStore): Promise<void> {
  assert.deepEqual((await verifyStore(store, { narHash: true })).problems, [])
}

describe('bundles of small blobs', { skip: SKIP }, () => {
  test('an import of many small files: the store path and NAR Nix gives, one bundle, each blob once, nothing written again', async () => {
    const root = scratch()
    const src = smallTree(300, (i) => `small file ${i}\n`.repeat(i % 7))
    const store = await openLocalStore(root)
    const got = await importPath(store, src)
    assert.equal(got.storePath, nix.add(src))
    assert.ok((await narOf(store, got.storePath)).equals(NixStore.dump(src)))
    assert.equal(bundles(root).length, 1)
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(root, 'tvix-store.json'), 'utf8')), { format: 'tvix-store-local', version: 4 })
    // Distinct contents: 300 files, `i % 7` repeats of a line, so some are empty; copies are stored once.
    const distinct = new Set([...Array(300).keys()].map((i) => `small file ${i}\n`.repeat(i % 7)))
    distinct.add('#!/bin/sh\n')
    const files = plainBlobs(root).length + bundleMembers(root)
    assert.equal(files, distinct.size)
    // Every file reads back from a fresh process's view of the store, checked.
    const fresh = await openLocalStore(root)
    for (const c of distinct) assert.equal((await readAll((await fresh.blobs.open(b3(Buffer.from(c))))!)).toString(), c)
    // Imported again (a new process): nothing new is written.
    const before = fs.readdirSync(path.join(root, 'blobs'), { recursive: true }).length
    assert.equal((await importPath(fresh, src)).storePath, got.storePath)
    assert.equal(fs.readdirSync(path.join(root, 'blobs'), { recursive: true }).length, before)
    await assertClean(fresh)
  })

  test('a NAR ingest (import --nar) bundles its small files too; its export is the NAR itself', async () => {
    const root = scratch()
    const src = smallTree(120, (i) => randomBytes(1 + ((i * 97) % 5000), i))
    const nar = NixStore.dump(src)
    const store = await openLocalStore(root)
    const got = await importNar(store, iterateSource(nar), 'from-nar')
    assert.equal(got.storePath, nix.pathOf(src, 'from-nar'))
    assert.equal(bundles(root).length, 1)
    assert.ok((await narOf(await openLocalStore(root), got.storePath)).equals(nar))
  })

  test('more than 16 new small files: all in the bundle, in NAR order, no plain file; 16 or fewer: plain files, no bundle', async () => {
    /** A folder of `count` files named in NAR order with distinct contents of `size(i)` bytes; the contents in that order. */
    const flat = (count: number, size: (i: number) => number) => {
      const dir = scratch()
      const contents = [...Array(count).keys()].map((i) => randomBytes(size(i), 0x5100 + i))
      contents.forEach((c, i) => fs.writeFileSync(path.join(dir, `f${String(i).padStart(3, '0')}`), c))
      return { dir, contents }
    }
    const bundleData = (root: string) => {
      const [only] = bundles(root)
      return fs.readFileSync(path.join(root, 'blobs', 'bundles', only!))
    }
    // 40 files: the first 16 are held, then go into the bundle ahead of the rest, so it is the NAR's files in order.
    const many = flat(40, (i) => 100 + i)
    const root = scratch()
    const got = await importPath(await openLocalStore(root), many.dir)
    assert.equal(got.storePath, nix.add(many.dir))
    assert.deepEqual(plainBlobs(root), [])
    assert.equal(bundles(root).length, 1)
    const all = Buffer.concat(many.contents)
    assert.ok(bundleData(root).subarray(0, all.length).equals(all))
    // 16 files: plain files only, as before.
    const few = flat(16, (i) => 100 + i)
    const root2 = scratch()
    await importPath(await openLocalStore(root2), few.dir)
    assert.equal(plainBlobs(root2).length, 16)
    assert.deepEqual(bundles(root2), [])
    // The first small files beyond 1 MiB held stay plain files, written as they come: a stage never holds more.
    const large = flat(20, (i) => (i < 4 ? 400 << 10 : 100 + i))
    const root3 = scratch()
    const got3 = await importPath(await openLocalStore(root3), large.dir)
    assert.equal(plainBlobs(root3).length, 2)
    assert.equal(bundleMembers(root3), 18)
    assert.ok((await narOf(await openLocalStore(root3), got3.storePath)).equals(NixStore.dump(large.dir)))
    await assertClean(await openLocalStore(root3))
  })

  test('a version 3 store (plain files only) is read as it is, and its first write adds bundles and marks it version 4', async () => {
    const root = scratch()
    const old = smallTree(6, (i) => `old ${i}\n`, false)
    const store = await openLocalStore(root)
    const first = await importPath(store, old)
    // Six files stay plain files (a stage's first ones): exactly a version 3 store's layout, then its marker.
    assert.deepEqual(bundles(root), [])
    fs.chmodSync(path.join(root, 'tvix-store.json'), 0o644)
    fs.writeFileSync(path.join(root, 'tvix-store.json'), JSON.stringify({ format: 'tvix-store-local', version: 3 }) + '\n')
    const v3 = await openLocalStore(root)
    assert.ok((await narOf(v3, first.storePath)).equals(NixStore.dump(old)))
    const src = smallTree(80, (i) => `new ${i}\n`)
    const second = await importPath(v3, src)
    assert.equal(second.storePath, nix.add(src))
    assert.equal(JSON.parse(fs.readFileSync(path.join(root, 'tvix-store.json'), 'utf8')).version, 4)
    assert.equal(bundles(root).length, 1)
    const reopened = await openLocalStore(root)
    assert.ok((await narOf(reopened, first.storePath)).equals(NixStore.dump(old)))
    assert.ok((await narOf(reopened, second.storePath)).equals(NixStore.dump(src)))
    await assertClean(reopened)
  })

  test('past 16 bundles lookups go through one table: every member found, a re-import writes nothing, gc of one path leaves the rest', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    const trees = Array.from({ length: 20 }, (_, t) => smallTree(20, (i) => `tree ${t} file ${i}\n`, false))
    const paths: string[] = []
    for (const t of trees) paths.push((await importPath(store, t)).storePath)
    const written = bundles(root)
    assert.equal(written.length, 20)
    // A reader that loads all 20 bundles at once (a new process), then the writer's own set, which grew one by one.
    const reader = await openLocalStore(root)
    for (const s of [reader, store]) {
      for (let t = 0; t < 20; t++) for (let i = 0; i < 20; i += 7) assert.ok(await s.blobs.has(b3(Buffer.from(`tree ${t} file ${i}\n`))), `tree ${t} file ${i}`)
      assert.equal(await s.blobs.has(b3(Buffer.from('in no tree\n'))), false)
    }
    for (const t of trees) await importPath(reader, t)
    assert.deepEqual(bundles(root), written, 're-imports found every file in the bundles')
    await collectGarbage(store, { graceMs: 0, deletePaths: [parseStorePathArg(paths[3]!).path] })
    assert.equal(bundles(root).length, 19)
    // The reader's table named the deleted bundle: a read of its file finds it gone (the table is rebuilt without
    // it), the other trees are still found and read.
    assert.equal(await reader.blobs.open(b3(Buffer.from('tree 3 file 0\n'))), undefined)
    for (const t of [0, 19]) assert.ok((await narOf(reader, paths[t]!)).equals(NixStore.dump(trees[t]!)))
    assert.equal(await (await openLocalStore(root)).blobs.has(b3(Buffer.from('tree 3 file 0\n'))), false)
    await assertClean(reader)
  })

  test('gc compacts a bundle shared by a live and a dead path, and deletes one whose members are all dead', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    // `a` and `b` share every even file; `a` is imported first, so the shared ones are in its bundle.
    const a = smallTree(80, (i) => (i % 2 === 0 ? `shared ${i}\n` : `only in a ${i}\n`), false)
    const b = smallTree(80, (i) => (i % 2 === 0 ? `shared ${i}\n` : `only in b ${i}\n`), false)
    const pa = (await importPath(store, a)).storePath
    const pb = (await importPath(store, b)).storePath
    const bundleA = bundles(root)
    assert.equal(bundleA.length, 2)
    // A reader that loaded the bundle indexes before the sweep and reads after it (a daemon serving meanwhile).
    const reader = await openLocalStore(root)
    assert.equal(await reader.blobs.has(b3(Buffer.from('shared 40\n'))), true)
    const r = await collectGarbage(store, { graceMs: 0, deletePaths: [parseStorePathArg(pa).path] })
    assert.deepEqual(r.paths, [pa])
    assert.equal(r.blobs, 40, "a's own files (plain or in its bundle)")
    // `a`'s bundle is replaced by one holding only the shared files `b` still needs.
    const after1 = bundles(root)
    assert.equal(after1.length, 2)
    assert.equal(after1.filter((f) => bundleA.includes(f)).length, 1, 'one of the two bundles was rewritten')
    assert.ok((await narOf(store, pb)).equals(NixStore.dump(b)))
    assert.ok((await narOf(reader, pb)).equals(NixStore.dump(b)), 'a reader whose index named the old bundle finds the new one')
    const fresh = await openLocalStore(root)
    assert.ok((await narOf(fresh, pb)).equals(NixStore.dump(b)))
    await assertClean(fresh)
    for (let i = 1; i < 80; i += 2) assert.equal(await fresh.blobs.has(b3(Buffer.from(`only in a ${i}\n`))), false)
    const again = await collectGarbage(fresh, { graceMs: 0 })
    assert.equal(again.blobs + again.packs + again.directories, 0, 'nothing left to sweep')
    // Then `b` goes too: every bundle is deleted.
    await collectGarbage(fresh, { graceMs: 0, deletePaths: [parseStorePathArg(pb).path] })
    assert.deepEqual(bundles(root), [])
    assert.deepEqual(plainBlobs(root), [])
  })

  test('gc racing a writer that dedups against bundle members: a swept member fails its commit, a compacted live one does not', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    // One bundle of orphans and of what a path imported later uses: staged, committed, then half of it named.
    const stage = store.blobs.stage()
    const orphans = [...Array(40).keys()].map((i) => Buffer.from(`orphan ${i}\n`))
    for (let i = 0; i < 40; i++) {
      await stage.put(orphans[i]!)
      await stage.put(Buffer.from(`kept ${i}\n`))
    }
    await stage.commit()
    const kept = smallTree(40, (i) => `kept ${i}\n`, false)
    const keptPath = (await importPath(store, kept)).storePath
    const [shared] = bundles(root)
    assert.equal(bundles(root).length, 1, 'the import found every file stored')
    const other = await openLocalStore(root)
    const session = async (blob: Buffer, go: Promise<void>) =>
      other.writeSession(async (view) => {
        const s = view.blobs.stage()
        await s.put(blob) // found stored: relied on, not written
        await go
        await s.commit()
        const dir = directoryFromEntries([{ kind: 'file', name: Buffer.from('f'), digest: b3(blob), size: blob.length, executable: false }])
        return view.directories.putClosure([dir])
      })
    let resume!: () => void
    const go = new Promise<void>((r) => (resume = r))
    const onOrphan = session(orphans[39]!, go)
    const onKept = session(Buffer.from('kept 39\n'), go)
    await new Promise((r) => setTimeout(r, 20))
    const r = await collectGarbage(store, { graceMs: 0 })
    assert.equal(r.blobs, 40)
    assert.equal(bundles(root).length, 1)
    assert.notEqual(bundles(root)[0], shared, 'the bundle was compacted')
    resume()
    await assert.rejects(onOrphan, /garbage-collected while this write was under way/)
    await onKept
    assert.ok((await narOf(other, keptPath)).equals(NixStore.dump(kept)))
    await assertClean(other)
  })

  test('verify checks every member; --repair removes a corrupt one (rewriting its bundle) and the paths that needed it', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    const src = smallTree(60, (i) => `member ${i}\n`, false)
    const storePath = (await importPath(store, src)).storePath
    const [name] = bundles(root)
    const file = path.join(root, 'blobs', 'bundles', name!)
    // Damage the first member's bytes (members come first in the file).
    const bytes = fs.readFileSync(file)
    fs.chmodSync(file, 0o644)
    bytes[0] = bytes[0]! ^ 0xff
    fs.writeFileSync(file, bytes)
    const fresh = await openLocalStore(root)
    const found = await verifyStore(fresh)
    assert.equal(found.problems.filter((p) => /^blob b3:.* \(in bundle [0-9a-f]{64}\) is corrupt/.test(p.message)).length, 1, JSON.stringify(found.problems))
    assert.ok(found.problems.some((p) => p.message.startsWith(`path '${storePath}' cannot be served: blob`)))
    await assert.rejects(narOf(fresh, storePath), /is corrupt/)
    const repaired = await verifyStore(fresh, { repair: true })
    assert.ok(repaired.removed.some((l) => /^removed blob b3:.* from bundle [0-9a-f]{64} \(corrupt\)$/.test(l)), JSON.stringify(repaired.removed))
    assert.ok(repaired.removed.some((l) => /^removed path '.*' \(blob b3:.* is gone\)$/.test(l) && l.startsWith(`removed path '${storePath}'`)), JSON.stringify(repaired.removed))
    assert.equal(fs.existsSync(file), false)
    assert.deepEqual((await verifyStore(fresh)).problems, [])
    // Importing the same content again restores it.
    assert.equal((await importPath(await openLocalStore(root), src)).storePath, storePath)
    await assertClean(await openLocalStore(root))
  })
})

/** Members in every bundle of the store (from each trailer's count). */
function bundleMembers(root: string): number {
  let total = 0
  for (const f of bundles(root)) {
    const bytes = fs.readFileSync(path.join(root, 'blobs', 'bundles', f))
    total += bytes.readUInt32LE(bytes.length - 52)
  }
  return total
}

