import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { collectGarbage } from '../../src/backends/local/gc.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { verifyStore } from '../../src/backends/local/verify.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { queryPaths } from '../../src/ops/query.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { PathInfo } from '../../src/store/path-info.js'
import type { Store } from '../../src/store/store.js'
import { baseNameOf, putSyntheticPath } from '../helpers/path-infos.js'

const fresh = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-referrers-'))
const hashOf = (i: PathInfo) => baseNameOf(i).slice(0, 32)
const digestOf = (i: PathInfo) => nixbase32.decode(hashOf(i))
const names = (infos: PathInfo[]) => infos.map(baseNameOf).sort()
const entry = (root: string, referenced: PathInfo, referrer: PathInfo) => path.join(root, 'referrers', hashOf(referenced), hashOf(referrer))

/** leaf <- left, right; left, right <- top; right refers to itself too (put with a self-reference). */
async function diamond(store: Store): Promise<Record<'leaf' | 'left' | 'right' | 'top', PathInfo>> {
  const leaf = await putSyntheticPath(store.pathInfos, 'leaf')
  const left = await putSyntheticPath(store.pathInfos, 'left', [leaf])
  const right = await putSyntheticPath(store.pathInfos, 'right', [leaf])
  const top = await putSyntheticPath(store.pathInfos, 'top', [left, right])
  return { leaf, left, right, top }
}

for (const [kind, open] of [
  ['local', async () => openLocalStore(fresh())],
  ['memory', async () => openMemoryStore()],
] as const) {
  test(`${kind}: referrers come from the index`, async () => {
    const store = await open()
    const d = await diamond(store)
    assert.deepEqual(names(await store.pathInfos.referrers!(digestOf(d.leaf))), names([d.left, d.right]))
    assert.deepEqual(names(await store.pathInfos.referrers!(digestOf(d.left))), names([d.top]))
    assert.deepEqual(await store.pathInfos.referrers!(digestOf(d.top)), [])
  })
}

describe('the referrers index of a local store', () => {
  test('a crash between the index entries and the PathInfo leaves a readable store: the stale entry is ignored, then removed by gc', async () => {
    const root = fresh()
    const store = await openLocalStore(root)
    const d = await diamond(store)
    // What a commit killed after its entries were durable and before its PathInfo leaves.
    const ghost = (await putSyntheticPath(openMemoryStore().pathInfos, 'ghost')) // a PathInfo that never reached this store
    store.pathInfos.index.add(digestOf(ghost), [digestOf(d.leaf)])
    await store.root.sync()
    assert.ok(fs.existsSync(entry(root, d.leaf, ghost)))
    assert.deepEqual(names(await store.pathInfos.referrers!(digestOf(d.leaf))), names([d.left, d.right]))
    assert.deepEqual((await verifyStore(store)).problems, [])
    await collectGarbage(store, { graceMs: 0 })
    assert.ok(!fs.existsSync(entry(root, d.leaf, ghost)))
    assert.ok(fs.existsSync(entry(root, d.leaf, d.left)))
  })

  test('gc --delete and --prune remove the entries of the paths they delete', async () => {
    const root = fresh()
    const store = await openLocalStore(root)
    const d = await diamond(store)
    await collectGarbage(store, { graceMs: 0, deletePaths: [d.top].map((i) => ({ digest: digestOf(i), name: baseNameOf(i).slice(33) })) })
    assert.ok(!fs.existsSync(entry(root, d.left, d.top)))
    assert.ok(!fs.existsSync(path.join(root, 'referrers', hashOf(d.left))), 'the folder of a path left with no referrers goes')
    assert.deepEqual(await store.pathInfos.referrers!(digestOf(d.right)), [])
    await collectGarbage(store, { graceMs: 0, prune: true })
    assert.deepEqual(fs.readdirSync(path.join(root, 'referrers')), [])
    assert.deepEqual(fs.readdirSync(path.join(root, 'pathinfo')), [])
    // A path registered again after its folder went is indexed again.
    const d2 = await diamond(store)
    assert.deepEqual(names(await store.pathInfos.referrers!(digestOf(d2.leaf))), names([d2.left, d2.right]))
  })

  test('verify finds a missing entry and --repair adds it back', async () => {
    const root = fresh()
    const store = await openLocalStore(root)
    const d = await diamond(store)
    fs.rmSync(entry(root, d.leaf, d.right))
    assert.deepEqual(names(await store.pathInfos.referrers!(digestOf(d.leaf))), names([d.left]))
    const found = await verifyStore(store)
    assert.deepEqual(found.problems.map((p) => p.message), [`path '/nix/store/${baseNameOf(d.right)}' is missing from the referrers index of '/nix/store/${baseNameOf(d.leaf)}'`])
    const repaired = await verifyStore(store, { repair: true })
    assert.deepEqual(repaired.added, [`added path '/nix/store/${baseNameOf(d.right)}' to the referrers index of '/nix/store/${baseNameOf(d.leaf)}'`])
    assert.deepEqual(repaired.removed, [])
    assert.deepEqual((await verifyStore(store)).problems, [])
    assert.deepEqual(names(await store.pathInfos.referrers!(digestOf(d.leaf))), names([d.left, d.right]))
  })

  test('a version 2 store (no index) answers by a scan, and its first write builds the index and marks it version 4 (the current one)', async () => {
    const root = fresh()
    const d = await diamond(await openLocalStore(root))
    fs.rmSync(path.join(root, 'referrers'), { recursive: true })
    fs.writeFileSync(path.join(root, 'tvix-store.json'), '{"format":"tvix-store-local","version":2}\n')
    const old = await openLocalStore(root)
    assert.deepEqual(names(await old.pathInfos.referrers!(digestOf(d.leaf))), names([d.left, d.right]))
    assert.deepEqual((await verifyStore(old)).problems, [], 'no index to check yet')
    assert.ok(!fs.existsSync(path.join(root, 'referrers')), 'a read writes nothing')
    const extra = await putSyntheticPath(old.pathInfos, 'extra', [d.top])
    assert.equal(JSON.parse(fs.readFileSync(path.join(root, 'tvix-store.json'), 'utf8')).version, 4)
    for (const [of, by] of [[d.leaf, d.left], [d.leaf, d.right], [d.left, d.top], [d.right, d.top], [d.top, extra]] as const) {
      assert.ok(fs.existsSync(entry(root, of, by)), `${baseNameOf(by)} -> ${baseNameOf(of)}`)
    }
    const reopened = await openLocalStore(root)
    assert.deepEqual(names(await reopened.pathInfos.referrers!(digestOf(d.top))), names([extra]))
    assert.deepEqual((await verifyStore(reopened)).problems, [])
  })

  test('two writers upgrading a version 2 store at once, with gc --prune sweeping meanwhile: every PathInfo left has its entries', async () => {
    const root = fresh()
    const base = await diamond(await openLocalStore(root))
    fs.rmSync(path.join(root, 'referrers'), { recursive: true })
    fs.writeFileSync(path.join(root, 'tvix-store.json'), '{"format":"tvix-store-local","version":2}\n')
    const writers = [await openLocalStore(root), await openLocalStore(root)]
    const sweeper = await openLocalStore(root)
    let writing = true
    const sweeps = (async () => {
      let n = 0
      while (writing || n === 0) {
        await collectGarbage(sweeper, { graceMs: 0, prune: true })
        n++
        // Back to back, sweeps would starve the writers' commits (they back off up to 200 ms).
        await sleep(100)
      }
      return n
    })()
    const failures: string[] = []
    await Promise.all(
      writers.map(async (w, k) => {
        let prev = base.top
        for (let i = 0; i < 25; i++) {
          try {
            // In a session, as every command writes: a sweep that took `prev` meanwhile fails the commit.
            prev = await w.writeSession((view) => putSyntheticPath(view.pathInfos, `w${k}-${i}`, [prev, base.leaf]))
          } catch (e) {
            failures.push((e as Error).message)
            prev = await w.writeSession((view) => putSyntheticPath(view.pathInfos, `w${k}-${i}-again`))
          }
        }
      }),
    )
    writing = false
    assert.ok((await sweeps) > 0)
    assert.ok(failures.every((m) => /garbage-collected|does not have/i.test(m)), failures.join('\n'))
    assert.equal(JSON.parse(fs.readFileSync(path.join(root, 'tvix-store.json'), 'utf8')).version, 4)
    const check = await openLocalStore(root)
    assert.deepEqual((await verifyStore(check)).problems, [])
    for (const name of fs.readdirSync(path.join(root, 'pathinfo'))) {
      const info = (await check.pathInfos.get(nixbase32.decode(name)))!
      for (const r of info.references) assert.ok(fs.existsSync(path.join(root, 'referrers', nixbase32.encode(r), name)))
    }
  })

  test('referrers and their closure on a chain of 10,000 paths: no recursion, Nix\'s order', async () => {
    const store = openMemoryStore()
    const chain: PathInfo[] = []
    for (let i = 0; i < 10_000; i++) chain.push(await putSyntheticPath(store.pathInfos, `c${i}`, i > 0 ? [chain[i - 1]!] : []))
    const shown = (i: PathInfo) => `/nix/store/${baseNameOf(i)}`
    const closure = await queryPaths(store, 'referrers-closure', [shown(chain[0]!)])
    assert.equal(closure.length, 10_000)
    assert.deepEqual(closure, chain.map(shown), 'each path after the paths it refers to')
    assert.deepEqual(await queryPaths(store, 'requisites', [shown(chain[9_999]!)]), chain.map(shown))
  })
})

