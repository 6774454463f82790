/**
 * A tree imported before is not read again while it looks the same to
 * lstat (import-cache.ts, tree-fingerprint.ts): in-process against local
 * stores, counting the files of the tree the import opens, and through
 * the CLI against `nix-store --add` of the same tree after each change.
 * Entries changed within 2 s of an import are not recorded, so each tree
 * here is left to settle for 2 s first (a wait, not a time asserted).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { openStore } from '../../src/backends/open-store.js'
import { ImportCache } from '../../src/ops/import-cache.js'
import { importPath } from '../../src/ops/import-paths.js'
import { parseStorePathArg } from '../../src/store/store-path.js'
import type { Store } from '../../src/store/store.js'
import { runCli } from '../helpers/cli.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { opensOf } from '../helpers/opens.js'

const SKIP_NIX = nixMissing()
if (SKIP_NIX) console.log(`skipping the CLI comparison with nix-store --add: ${SKIP_NIX}`)

let tmp: string
before(() => {
  tmp = fs.mkdtempSync(path.join(process.env.TMPDIR ?? '/tmp', 'import-cache-'))
})
after(() => fs.rmSync(tmp, { recursive: true, force: true }))

/** A small tree: files in nested folders, an executable, a symlink, an empty folder. */
function makeTree(dir: string): void {
  fs.mkdirSync(path.join(dir, 'sub/deeper'), { recursive: true })
  fs.mkdirSync(path.join(dir, 'empty'))
  fs.writeFileSync(path.join(dir, 'a.txt'), 'alpha\n')
  fs.writeFileSync(path.join(dir, 'sub/b.txt'), 'bravo\n')
  fs.writeFileSync(path.join(dir, 'sub/deeper/c.sh'), '#!/bin/sh\necho charlie\n', { mode: 0o755 })
  fs.symlinkSync('../a.txt', path.join(dir, 'sub/link'))
}

/** Waits until every entry of `dir` was last changed more than 2 s ago (what an import records). */
async function settle(dir: string): Promise<void> {
  let newest = 0
  for (const e of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const st = fs.lstatSync(path.join(e.parentPath ?? e.path, e.name))
    newest = Math.max(newest, st.mtimeMs, st.ctimeMs)
  }
  while (Date.now() <= newest + 2100) await sleep(newest + 2100 - Date.now() + 10)
}

/** The files under `dir` that `fn` opens (fs.openSync is how an import opens a file it reads). */
const opensUnder = <T>(dir: string, fn: () => Promise<T>) => opensOf((p) => p.startsWith(dir + '/'), fn)

describe('import of a tree unchanged since its last import', () => {
  let tree: string
  let store: Store
  const cache = () => ({ cache: ImportCache.forUser(), scope: path.join(tmp, 'store') })

  before(async () => {
    tree = path.join(tmp, 'tree')
    makeTree(tree)
    await settle(tree)
    store = await openStore({ url: path.join(tmp, 'store') })
  })
  after(() => store.close())

  test('reads every file the first time, and none the second; both give the same path', async () => {
    const first = await opensUnder(tree, () => importPath(store, tree, { cache: cache() }))
    assert.equal(first.opened.length, 3, `the first import opens each of the 3 files: ${first.opened.join(', ')}`)
    const second = await opensUnder(tree, () => importPath(store, tree, { cache: cache() }))
    assert.deepEqual(second.opened, [])
    assert.equal(second.result.storePath, first.result.storePath)
    assert.equal(Buffer.compare(second.result.narSha256, first.result.narSha256), 0)
    assert.equal(second.result.narSize, first.result.narSize)
  })

  test('--rehash reads it all again, and a store without the path imports it afresh', async () => {
    const again = await opensUnder(tree, () => importPath(store, tree, { cache: cache(), rehash: true }))
    assert.equal(again.opened.length, 3)
    // Another store under the same name in the cache (a store deleted and made again): the entry names a path it lacks.
    const fresh = await openStore({ url: path.join(tmp, 'store-2') })
    try {
      const r = await opensUnder(tree, () => importPath(fresh, tree, { cache: cache() }))
      assert.equal(r.opened.length, 3)
      assert.equal(r.result.storePath, again.result.storePath)
      assert.ok(await fresh.pathInfos.get(parseStorePathArg(r.result.storePath).path.digest), 'the fresh store has the path now')
    } finally {
      await fresh.close()
    }
  })

  test('a file rewritten with the same size and its old mtime put back is read again', async () => {
    const before = await importPath(store, tree, { cache: cache() })
    const file = path.join(tree, 'sub/b.txt')
    const st = fs.statSync(file)
    fs.writeFileSync(file, 'BRAVO\n')
    fs.utimesSync(file, st.atime, st.mtime)
    const r = await opensUnder(tree, () => importPath(store, tree, { cache: cache() }))
    assert.ok(r.opened.length > 0, 'the changed tree is read')
    assert.notEqual(r.result.storePath, before.storePath)
    // Changed less than 2 s ago: not recorded, so the next import reads it again too.
    const next = await opensUnder(tree, () => importPath(store, tree, { cache: cache() }))
    assert.ok(next.opened.length > 0)
    assert.equal(next.result.storePath, r.result.storePath)
  })

  test('a cache folder others may write is not trusted', async () => {
    await settle(tree)
    const first = await importPath(store, tree, { cache: cache() })
    const dir = path.join(process.env.XDG_CACHE_HOME!, 'tvix-store', 'imports')
    fs.chmodSync(dir, 0o777)
    try {
      const r = await opensUnder(tree, () => importPath(store, tree, { cache: cache() }))
      assert.equal(r.opened.length, 3)
      assert.equal(r.result.storePath, first.storePath)
    } finally {
      fs.chmodSync(dir, 0o700)
    }
  })
})

describe('import through the CLI after each change, against nix-store --add', { skip: SKIP_NIX }, () => {
  test('prints what Nix computes for the tree as it is now', async () => {
    const tree = path.join(tmp, 'cli-tree')
    makeTree(tree)
    await settle(tree)
    const nix = new NixStore(path.join(tmp, 'nix'))
    const store = path.join(tmp, 'cli-store')
    const ours = async (...flags: string[]) => {
      const r = await runCli(['import', '--store', store, ...flags, tree])
      assert.equal(r.code, 0, r.stderr)
      return r.stdout.toString().trim()
    }
    const changes: Array<[string, () => void]> = [
      ['unchanged', () => {}],
      ['a file rewritten, same size, old mtime', () => {
        const f = path.join(tree, 'a.txt')
        const st = fs.statSync(f)
        fs.writeFileSync(f, 'ALPHA\n')
        fs.utimesSync(f, st.atime, st.mtime)
      }],
      ['a file made executable', () => fs.chmodSync(path.join(tree, 'sub/b.txt'), 0o755)],
      ['a file renamed, an empty folder added, a symlink pointed elsewhere', () => {
        fs.renameSync(path.join(tree, 'sub/b.txt'), path.join(tree, 'sub/b2.txt'))
        fs.mkdirSync(path.join(tree, 'empty/more'))
        fs.rmSync(path.join(tree, 'sub/link'))
        fs.symlinkSync('deeper', path.join(tree, 'sub/link'))
      }],
    ]
    for (const [what, change] of changes) {
      change()
      const want = nix.pathOf(tree)
      assert.equal(await ours(), want, `${what}: first import`)
      await settle(tree)
      assert.equal(await ours(), want, `${what}: import after it settled (recorded)`)
      assert.equal(await ours(), want, `${what}: import found unchanged`)
      assert.equal(await ours('--rehash'), want, `${what}: --rehash`)
    }
  })
})
