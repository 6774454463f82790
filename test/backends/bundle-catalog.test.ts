/**
 * The bundles' catalog (blobs/bundles/catalog): written by the commit
 * that leaves more than 16 bundles outside it, it stands in for the
 * indexes of the bundles it names (a fresh reader opens it and the few
 * others, not every bundle), a damaged one is ignored and replaced, and
 * gc's deletion or compaction of a bundle it names loses nothing.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { BundleCatalog } from '../../src/backends/local/bundle-catalog.js'
import { BundleWriter, readBundleIndex } from '../../src/backends/local/bundle.js'
import { collectGarbage } from '../../src/backends/local/gc.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { verifyStore } from '../../src/backends/local/verify.js'
import { readAll } from '../../src/castore/blob-service.js'
import { b3 } from '../../src/castore/digest.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import { parseStorePathArg } from '../../src/store/store-path.js'
import { flipByte } from '../helpers/corrupt.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { opensOf } from '../helpers/opens.js'

let tmp: string
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-catalog-'))
})
after(() => fs.rmSync(tmp, { recursive: true, force: true }))

let n = 0
const scratch = () => fs.mkdtempSync(path.join(tmp, `s${n++}-`))
const catalogOf = (root: string) => path.join(root, 'blobs', 'bundles', 'catalog')
const bundleFiles = (root: string) => fs.readdirSync(path.join(root, 'blobs', 'bundles')).filter((f) => f.endsWith('.bundle'))
const file = (t: number, i: number) => Buffer.from(`tree ${t} file ${i}\n`)

/** A tree of 20 small files (`content`), so that its import writes a bundle. */
function tree(content: (i: number) => Buffer): string {
  const dir = scratch()
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(dir, `f${i}`), content(i))
  return dir
}

/** Counts the bundle files `fn` opens. */
const bundleOpens = async (fn: () => Promise<void>) => (await opensOf((p) => p.endsWith('.bundle'), fn)).opened.length

test('past 16 bundles outside it the commit writes the catalog; a fresh reader opens it and the bundles published since, not every bundle', async () => {
  const root = scratch()
  const store = await openLocalStore(root)
  for (let t = 0; t < 20; t++) await importPath(store, tree((i) => file(t, i)))
  assert.equal(bundleFiles(root).length, 20)
  // Written at the 17th bundle; the last three are outside it.
  assert.equal(BundleCatalog.read(catalogOf(root))!.names.length, 17)
  const reader = await openLocalStore(root)
  const opens = await bundleOpens(async () => {
    assert.ok(await reader.blobs.has(b3(file(0, 0))))
    assert.ok(await reader.blobs.has(b3(file(19, 0))))
    assert.equal(await reader.blobs.has(b3(Buffer.from('in no tree\n'))), false)
  })
  assert.equal(opens, 3, 'the three bundles the catalog does not name')
  for (const s of [reader, store]) for (let t = 0; t < 20; t++) for (const i of [0, 19]) assert.ok(Buffer.from(await readAll((await s.blobs.open(b3(file(t, i))))!)).equals(file(t, i)))
  // Three more imports leave 6 outside; 11 more make 17 again, and the new catalog names all 34.
  for (let t = 20; t < 34; t++) await importPath(store, tree((i) => file(t, i)))
  assert.equal(BundleCatalog.read(catalogOf(root))!.names.length, 34)
  assert.deepEqual((await verifyStore(store, { narHash: true })).problems, [], 'verify takes the catalog for no object')
})

test('a damaged catalog is ignored (every member still found) and the next catalog replaces it', async () => {
  const root = scratch()
  const store = await openLocalStore(root)
  for (let t = 0; t < 17; t++) await importPath(store, tree((i) => file(t, i)))
  flipByte(catalogOf(root), 40)
  assert.throws(() => BundleCatalog.read(catalogOf(root)), /bundle catalog .* is damaged/)
  const reader = await openLocalStore(root)
  for (let t = 0; t < 17; t++) assert.ok(await reader.blobs.has(b3(file(t, 3))), `tree ${t}`)
  // Its 17 bundles were read one by one: the reader's first commit writes a catalog of all 18.
  await importPath(reader, tree((i) => file(17, i)))
  assert.equal(BundleCatalog.read(catalogOf(root))!.names.length, 18)
})

test('verify reports a damaged catalog as a problem, and --repair writes it again from the bundles', async () => {
  const root = scratch()
  const store = await openLocalStore(root)
  for (let t = 0; t < 17; t++) await importPath(store, tree((i) => file(t, i)))
  assert.deepEqual((await verifyStore(store, {})).problems, [])
  flipByte(catalogOf(root), 64)
  const found = await verifyStore(await openLocalStore(root), {})
  assert.equal(found.problems.length, 1)
  assert.match(found.problems[0]!.message, /^bundle catalog .*catalog is damaged: it does not match its digest$/)
  const repaired = await verifyStore(await openLocalStore(root), { repair: true })
  assert.deepEqual(repaired.removed, [])
  assert.deepEqual(repaired.added, ['wrote the catalogs again from the bundles and packs there are'])
  assert.equal(BundleCatalog.read(catalogOf(root))!.names.length, 17)
  assert.deepEqual((await verifyStore(await openLocalStore(root), {})).problems, [])
})

test('gc deletes one bundle the catalog names and compacts another: the catalog is written again, nothing live is lost, for a fresh reader and one that read the catalog before', { skip: nixMissing() }, async () => {
  const root = scratch()
  const store = await openLocalStore(root)
  // Tree 0 first: the files it shares with tree 1 (the even ones) are in its bundle.
  const shared = (t: number) => (i: number) => (i % 2 === 0 ? Buffer.from(`shared ${i}\n`) : file(t, i))
  const trees = [tree(shared(0)), tree(shared(1)), ...Array.from({ length: 16 }, (_, t) => tree((i) => file(t + 2, i)))]
  const paths: string[] = []
  for (const t of trees) paths.push((await importPath(store, t)).storePath)
  assert.equal(BundleCatalog.read(catalogOf(root))!.names.length, 17)
  const before = await openLocalStore(root)
  assert.ok(await before.blobs.has(b3(file(2, 1))))
  await collectGarbage(store, { graceMs: 0, deletePaths: [paths[0]!, paths[2]!].map((p) => parseStorePathArg(p).path) })
  // gc wrote the catalog again: it names exactly the bundles there are (tree 2's gone, tree 0's replaced by its compacted copy).
  assert.deepEqual(new Set(BundleCatalog.read(catalogOf(root))!.names.map((b) => `${b}.bundle`)), new Set(bundleFiles(root)))
  // 17 bundles before (tree 1's 10 files of its own went to plain files): one deleted, one replaced.
  assert.equal(bundleFiles(root).length, 16)
  for (const s of [before, await openLocalStore(root)]) {
    for (const t of [1, 3, 17]) assert.ok((await readAll(await exportNar(s, paths[t]!))).equals(NixStore.dump(trees[t]!)), `tree ${t}`)
    assert.equal(await s.blobs.has(b3(file(0, 1))), false)
    assert.equal(await s.blobs.has(b3(file(2, 1))), false)
  }
})

test('a digest in two bundles is found in the one still there', () => {
  const root = scratch()
  const bundle = (extra: string) => {
    const w = BundleWriter.create(path.join(root, `${extra}.tmp`))
    for (const c of ['same\n', extra]) w.add(b3(Buffer.from(c)), Buffer.from(c))
    const name = w.finish()
    return readBundleIndex(path.join(root, `${extra}.tmp`), name)!
  }
  const [a, b] = [bundle('only in a\n'), bundle('only in b\n')]
  const file = path.join(root, 'catalog')
  BundleCatalog.build([a, b]).write(file)
  const catalog = BundleCatalog.read(file)!
  const same = b3(Buffer.from('same\n'))
  const numberOf = (name: string) => catalog.names.indexOf(name)
  assert.equal(catalog.find(same, (n) => n === numberOf(b.name))?.bundle, numberOf(b.name))
  assert.equal(catalog.find(same, (n) => n === numberOf(a.name))?.bundle, numberOf(a.name))
  assert.equal(catalog.find(same, () => false), undefined)
  assert.deepEqual(catalog.find(b3(Buffer.from('only in b\n')), () => true)?.member, b.find(b3(Buffer.from('only in b\n'))))
  // Carried over from it, without the bundle that went: b's members only.
  const next = path.join(root, 'catalog2')
  BundleCatalog.build([], { catalog, keep: (n) => n === numberOf(b.name) }).write(next)
  const carried = BundleCatalog.read(next)!
  assert.deepEqual(carried.names, [b.name])
  assert.equal(carried.find(b3(Buffer.from('only in a\n')), () => true), undefined)
  assert.ok(carried.find(same, () => true))
})
