/**
 * The chunks' catalog (blobs/chunk-catalog): written by the commit that
 * leaves more than 16 packs outside it, it stands in for the manifests of
 * the packs it names (a fresh process's dedup and chunk reads open only
 * the others), a damaged one is ignored and replaced, and gc writes it
 * again without the packs it deleted.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { Catalog } from '../../src/backends/local/catalog.js'
import { collectGarbage } from '../../src/backends/local/gc.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { verifyStore } from '../../src/backends/local/verify.js'
import { readAll } from '../../src/castore/blob-service.js'
import { b3 } from '../../src/castore/digest.js'
import { importPath } from '../../src/ops/import-paths.js'
import { parseStorePathArg } from '../../src/store/store-path.js'
import { flipByte } from '../helpers/corrupt.js'
import { opensOf } from '../helpers/opens.js'
import { randomBytes } from '../helpers/trees.js'

let tmp: string
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-chunk-catalog-'))
})
after(() => fs.rmSync(tmp, { recursive: true, force: true }))

let n = 0
const scratch = () => fs.mkdtempSync(path.join(tmp, `s${n++}-`))
const catalogOf = (root: string) => path.join(root, 'blobs', 'chunk-catalog')
const FORMAT = { magic: Buffer.from('TVXCHNK1'), stride: 56, what: 'chunk catalog' }
const packNames = (root: string) => (fs.readdirSync(path.join(root, 'blobs', 'b3'), { recursive: true }) as string[]).filter((f) => f.endsWith('.pack'))
const big = (i: number) => randomBytes((1 << 20) + 200_000, 9_000 + i)

/** A tree holding one file over 1 MiB: its import writes a pack. */
function tree(data: Buffer): string {
  const dir = scratch()
  fs.writeFileSync(path.join(dir, 'big.bin'), data)
  return dir
}

/** Counts the pack files `fn` opens. */
const packOpens = async (fn: () => Promise<void>) => (await opensOf((p) => p.endsWith('.pack'), fn)).opened.length

/** A store of 20 packs (the catalog written at the 17th) and the files they hold. */
async function storeOf20(): Promise<{ root: string; data: Buffer[]; paths: string[] }> {
  const root = scratch()
  const store = await openLocalStore(root)
  const data = Array.from({ length: 20 }, (_, i) => big(i))
  const paths: string[] = []
  // Each import loads the chunk index (a large file's dedup), as an import in a CLI does: so its commit may consolidate.
  for (const d of data) paths.push((await importPath(store, tree(d))).storePath)
  return { root, data, paths }
}

/** `data` with 100 bytes changed in its middle: all but a chunk or two equal to its chunks. */
const edited = (data: Buffer) => {
  const copy = Buffer.from(data)
  copy.fill(0x5a, copy.length >> 1, (copy.length >> 1) + 100)
  return copy
}

test('past 16 packs outside it the commit writes the catalog; a fresh import dedups against its packs opening only the other manifests, and chunks are read by digest through it', async () => {
  const { root, data } = await storeOf20()
  assert.equal(packNames(root).length, 20)
  assert.equal(Catalog.read(catalogOf(root), FORMAT)!.owners.length, 17)
  const fresh = await openLocalStore(root)
  const before = new Set(packNames(root))
  const opens = await packOpens(async () => {
    await importPath(fresh, tree(edited(data[0]!)))
  })
  assert.equal(opens, 3, 'the manifests of the three packs outside the catalog, and no other')
  const added = packNames(root).filter((p) => !before.has(p))
  assert.equal(added.length, 1)
  assert.ok(fs.statSync(path.join(root, 'blobs', 'b3', added[0]!)).size < 400_000, 'the edited file stored only its new chunks')
  // A chunk read by its own digest, in a pack the catalog names, by a process that has not loaded the index.
  const reader = await openLocalStore(root)
  const whole = b3(data[1]!)
  const chunks = (await reader.blobs.chunks!(whole))!
  assert.ok(chunks.length > 1)
  let at = 0
  for (const c of chunks) {
    const got = Buffer.from(await readAll((await (await openLocalStore(root)).blobs.open(c.digest))!))
    assert.ok(got.equals(data[1]!.subarray(at, at + c.size)))
    at += c.size
  }
})

test('a damaged catalog is ignored (dedup and chunk reads go on) and the next catalog replaces it', async () => {
  const { root, data } = await storeOf20()
  flipByte(catalogOf(root), 100)
  assert.throws(() => Catalog.read(catalogOf(root), FORMAT), /chunk catalog .* is damaged/)
  const fresh = await openLocalStore(root)
  const before = new Set(packNames(root))
  await importPath(fresh, tree(edited(data[5]!)))
  const added = packNames(root).filter((p) => !before.has(p))
  assert.ok(fs.statSync(path.join(root, 'blobs', 'b3', added[0]!)).size < 400_000, 'deduplicated against the packs read one by one')
  // Its 21 packs were outside the (damaged) catalog: that commit wrote a new one.
  assert.equal(Catalog.read(catalogOf(root), FORMAT)!.owners.length, 21)
})

test('verify reports a damaged catalog as a problem, and --repair writes it again from the packs', async () => {
  const { root } = await storeOf20()
  flipByte(catalogOf(root), 64)
  const found = await verifyStore(await openLocalStore(root), {})
  assert.deepEqual(found.problems.map((p) => p.message.replace(/ \/\S+ is/, ' … is')), ['chunk catalog … is damaged: it does not match its digest'])
  await verifyStore(await openLocalStore(root), { repair: true })
  assert.equal(Catalog.read(catalogOf(root), FORMAT)!.owners.length, 20)
})

test('gc deletes a pack the catalog names: the catalog is written again without it, its chunks are gone, every other pack still deduplicates and reads', async () => {
  const { root, data, paths } = await storeOf20()
  const store = await openLocalStore(root)
  const first = (await store.blobs.chunks!(b3(data[0]!)))![0]!
  await collectGarbage(store, { graceMs: 0, deletePaths: [parseStorePathArg(paths[0]!).path] })
  // gc wrote the catalog again: without the pack it deleted, with the three that were outside it.
  const owners = Catalog.read(catalogOf(root), FORMAT)!.owners
  assert.equal(owners.length, 19)
  assert.deepEqual(new Set(owners.map((o) => `${o.slice(0, 2)}/${o}.pack`)), new Set(packNames(root)))
  const fresh = await openLocalStore(root)
  assert.equal(await fresh.blobs.has(first.digest), false)
  const other = (await fresh.blobs.chunks!(b3(data[2]!)))![0]!
  assert.ok(Buffer.from(await readAll((await fresh.blobs.open(other.digest))!)).equals(data[2]!.subarray(0, other.size)))
  const before = new Set(packNames(root))
  await importPath(fresh, tree(edited(data[2]!)))
  const added = packNames(root).filter((p) => !before.has(p))
  assert.ok(fs.statSync(path.join(root, 'blobs', 'b3', added[0]!)).size < 400_000)
})
