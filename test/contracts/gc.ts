import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { readAll } from '../../src/castore/blob-service.js'
import { type Directory, directoryDigest } from '../../src/castore/directory.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import { addRoot, listRoots, removeRoots } from '../../src/ops/roots.js'
import type { GarbageCollecting, GcRootsCapable } from '../../src/store/capabilities.js'
import { parseStorePathArg } from '../../src/store/store-path.js'
import type { Store } from '../../src/store/store.js'
import { baseNameOf, putSyntheticPath } from '../helpers/path-infos.js'

type GcStore = Store & GarbageCollecting

const NOW = { graceMs: 0 }
const storePathOf = (basename: string) => parseStorePathArg(`/nix/store/${basename}`).path
const codeOf = (code: string) => (e: unknown) => (e as { code?: string }).code === code

/** An orphan: a Directory holding one file, and its blob, that no PathInfo reaches (what an interrupted import leaves). */
async function putOrphanTree(store: Store, content: string): Promise<{ blob: Uint8Array; dir: Uint8Array }> {
  const { digest: blob, size } = await store.blobs.put(Buffer.from(content))
  const dir: Directory = { directories: [], files: [{ kind: 'file', name: Buffer.from('x'), digest: blob, size, executable: false }], symlinks: [] }
  await store.directories.putClosure([dir])
  return { blob, dir: directoryDigest(dir) }
}

/**
 * Inside a describe: a function making a directory to import (a file and a
 * subdirectory with one, distinct per call), all removed after the suite,
 * then `teardown` run.
 */
function scratchTrees(teardown?: () => Promise<void>): (tag: string) => string {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-gc-contract-'))
  after(async () => {
    fs.rmSync(work, { recursive: true, force: true })
    await teardown?.()
  })
  let trees = 0
  return (tag) => {
    const dir = path.join(work, `tree-${trees++}`)
    fs.mkdirSync(path.join(dir, 'sub'), { recursive: true })
    fs.writeFileSync(path.join(dir, 'top'), `top of ${tag}`)
    fs.writeFileSync(path.join(dir, 'sub', 'leaf'), `leaf of ${tag}`)
    return dir
  }
}

/**
 * What every store that collects garbage must do (the GarbageCollecting
 * capability), whatever it keeps its objects in. Errors are checked by
 * `code`, not by message.
 */
export function describeGarbageCollecting(name: string, open: () => Promise<GcStore>, teardown?: () => Promise<void>): void {
  describe(`GarbageCollecting contract: ${name}`, () => {
    const tree = scratchTrees(teardown)

    test('an orphan blob and Directory are swept and counted; what a PathInfo reaches stays readable', async () => {
      const store = await open()
      const kept = await importPath(store, tree('kept'))
      const narBefore = await readAll(await exportNar(store, kept.storePath))
      const orphan = await putOrphanTree(store, 'orphaned content')
      const r = await store.collectGarbage(NOW)
      assert.equal(r.dryRun, false)
      assert.deepEqual(r.paths, [])
      assert.equal(r.blobs + r.packs, 1)
      assert.equal(r.directories, 1)
      assert.ok(r.bytes >= 'orphaned content'.length, `bytes ${r.bytes}`)
      assert.equal(await store.blobs.has(orphan.blob), false)
      assert.equal(await store.directories.get(orphan.dir), undefined)
      assert.ok(await store.pathInfos.get(storePathOf(baseNameOf(kept.info)).digest))
      assert.deepEqual(await readAll(await exportNar(store, kept.storePath)), narBefore)
      const again = await store.collectGarbage(NOW)
      assert.equal(again.blobs + again.packs + again.directories, 0, 'nothing left to sweep')
    })

    test('a dry run reports the same and deletes nothing', async () => {
      const store = await open()
      const orphan = await putOrphanTree(store, 'dry run orphan')
      const dry = await store.collectGarbage({ ...NOW, dryRun: true })
      assert.equal(dry.dryRun, true)
      assert.equal(dry.blobs + dry.packs, 1)
      assert.equal(dry.directories, 1)
      assert.ok(await store.blobs.has(orphan.blob))
      assert.ok(await store.directories.get(orphan.dir))
      const real = await store.collectGarbage(NOW)
      assert.equal(real.blobs + real.packs, 1)
      assert.equal(real.directories, 1)
    })

    test('orphans younger than the grace period are kept and counted as kept', async () => {
      const store = await open()
      const orphan = await putOrphanTree(store, 'young orphan')
      const r = await store.collectGarbage({ graceMs: 3_600_000 })
      assert.equal(r.blobs + r.packs + r.directories, 0)
      assert.equal(r.keptYoung, 2)
      assert.ok(await store.blobs.has(orphan.blob))
    })

    test('delete refuses a path another path refers to (ERR_ALIVE), deleting nothing', async () => {
      const store = await open()
      const lib = await putSyntheticPath(store.pathInfos, 'gc-contract-lib')
      const app = await putSyntheticPath(store.pathInfos, 'gc-contract-app', [lib])
      const libPath = storePathOf(baseNameOf(lib))
      await assert.rejects(store.collectGarbage({ ...NOW, deletePaths: [libPath] }), codeOf('ERR_ALIVE'))
      assert.ok(await store.pathInfos.get(libPath.digest), 'the referenced path stays')
      // Together with what refers to it, it goes.
      const both = await store.collectGarbage({ ...NOW, deletePaths: [storePathOf(baseNameOf(app)), libPath] })
      assert.deepEqual([...both.paths].sort(), [`/nix/store/${baseNameOf(app)}`, `/nix/store/${baseNameOf(lib)}`].sort())
      assert.equal(await store.pathInfos.get(libPath.digest), undefined)
    })

    test('delete of a path with data frees its tree, keeping what another path shares; a missing path is ERR_NOT_FOUND', async () => {
      const store = await open()
      const a = await importPath(store, tree('a'))
      const shared = await importPath(store, tree('a'), { name: 'same-tree' })
      const doomed = storePathOf(baseNameOf(a.info))
      const r = await store.collectGarbage({ ...NOW, deletePaths: [doomed] })
      assert.deepEqual(r.paths, [a.storePath])
      assert.equal(r.blobs + r.packs + r.directories, 0, 'the other path still reaches the same tree')
      assert.ok((await readAll(await exportNar(store, shared.storePath))).length > 0)
      const alone = await store.collectGarbage({ ...NOW, deletePaths: [storePathOf(baseNameOf(shared.info))] })
      assert.equal(alone.blobs + alone.packs, 2)
      assert.equal(alone.directories, 2)
      await assert.rejects(store.collectGarbage({ ...NOW, deletePaths: [doomed] }), codeOf('ERR_NOT_FOUND'))
    })
  })
}

/**
 * What every store with GC roots and gc must do: roots kept by name,
 * `--prune` keeping their closures (data included) and nothing else,
 * `delete` refusing a rooted path unless told to ignore roots.
 */
export function describeGcRoots(name: string, open: () => Promise<GcStore & GcRootsCapable>, teardown?: () => Promise<void>): void {
  describe(`GC roots contract: ${name}`, () => {
    const tree = scratchTrees(teardown)

    test('roots are added, listed, repointed and removed; removing a missing root is ERR_NOT_FOUND', async () => {
      const store = await open()
      const a = await putSyntheticPath(store.pathInfos, 'roots-contract-a')
      const b = await putSyntheticPath(store.pathInfos, 'roots-contract-b')
      await addRoot(store, 'r1', `/nix/store/${baseNameOf(a)}`)
      assert.deepEqual(await listRoots(store), [{ name: 'r1', path: `/nix/store/${baseNameOf(a)}`, valid: true }])
      await addRoot(store, 'r1', `/nix/store/${baseNameOf(b)}`)
      assert.deepEqual(await removeRoots(store, ['r1']), [{ name: 'r1', path: `/nix/store/${baseNameOf(b)}`, valid: true }])
      assert.deepEqual(await listRoots(store), [])
      await assert.rejects(store.roots.remove('r1'), codeOf('ERR_NOT_FOUND'))
    })

    test('gc --prune keeps the closures of the roots, data and all, and deletes every other path and its data', async () => {
      const store = await open()
      const lib = await putSyntheticPath(store.pathInfos, 'roots-contract-lib')
      const app = await putSyntheticPath(store.pathInfos, 'roots-contract-app', [lib])
      const stray = await putSyntheticPath(store.pathInfos, 'roots-contract-stray')
      const kept = await importPath(store, tree('kept'))
      const gone = await importPath(store, tree('gone'))
      await addRoot(store, 'app', `/nix/store/${baseNameOf(app)}`)
      await addRoot(store, 'data', kept.storePath)
      const nar = await readAll(await exportNar(store, kept.storePath))
      const expected = [`/nix/store/${baseNameOf(stray)}`, gone.storePath].sort()
      const dry = await store.collectGarbage({ ...NOW, prune: true, dryRun: true })
      assert.deepEqual([...dry.paths].sort(), expected)
      assert.ok(await store.pathInfos.get(storePathOf(baseNameOf(gone.info)).digest), 'a dry run deletes nothing')
      const r = await store.collectGarbage({ ...NOW, prune: true })
      assert.deepEqual([...r.paths].sort(), expected)
      assert.equal(r.blobs + r.packs, 2, 'the two files only the deleted path had')
      assert.equal(r.directories, 2)
      for (const p of [lib, app]) assert.ok(await store.pathInfos.get(storePathOf(baseNameOf(p)).digest), `${baseNameOf(p)} stays`)
      assert.equal(await store.pathInfos.get(storePathOf(baseNameOf(stray)).digest), undefined)
      assert.deepEqual(await readAll(await exportNar(store, kept.storePath)), nar)
    })

    test('delete refuses a rooted path (ERR_ALIVE) unless roots are ignored', async () => {
      const store = await open()
      const p = await putSyntheticPath(store.pathInfos, 'roots-contract-rooted')
      await addRoot(store, 'pin', `/nix/store/${baseNameOf(p)}`)
      const sp = storePathOf(baseNameOf(p))
      await assert.rejects(store.collectGarbage({ ...NOW, deletePaths: [sp] }), (e: unknown) => codeOf('ERR_ALIVE')(e) && /GC root 'pin'/.test((e as Error).message))
      assert.ok(await store.pathInfos.get(sp.digest))
      const r = await store.collectGarbage({ ...NOW, deletePaths: [sp], ignoreRoots: true })
      assert.deepEqual(r.paths, [`/nix/store/${baseNameOf(p)}`])
    })
  })
}
