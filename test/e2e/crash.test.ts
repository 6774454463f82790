/**
 * Crash safety: imports and gc SIGKILLed at seeded random moments.
 *
 * After every kill the store must verify clean (`verify` exits 0 and
 * prints nothing: leftover temp files and stale lock tokens are not
 * problems), a re-import must print the store path Nix computes for the
 * tree, and that path must export exactly the NAR `nix-store --dump` gives.
 * A killed gc must leave every rooted path whole, and a later gc must
 * finish and leave the store clean. The checks after each kill run
 * in-process (test/helpers/store-checks.ts); the last ones of each test
 * through the CLI.
 *
 * Everything is seeded (trees, which tree each run imports, how, and when
 * the kill lands), so a failure names its run and can be replayed. Kill
 * delays are stratified over the measured wall time of a clean run: each
 * kind of run (tree and mode) is killed once in each third of it, each gc
 * kill lands in its own eighth, at a seeded point within it, so start-up,
 * writing and exit are all hit with fewer runs than uniform draws would
 * need (32 and 12 random kills before). Each test reports where the kills
 * landed.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { after, before, describe, test } from 'node:test'
import { type CliExit, runCli, spawnCli } from '../helpers/cli.js'
import { nixMissing, NixStore } from '../helpers/nix.js'
import { assertExportsNar, assertVerifies, type CheckOptions } from '../helpers/store-checks.js'
import { failIfStalled, killGroup } from '../helpers/spawn.js'
import { randomBytes, rng } from '../helpers/trees.js'

const MiB = 1 << 20
/**
 * Import runs: every (tree, mode) combination killed once per stratum. Two
 * halves of a clean run: with the seeded point within each, the 8
 * combinations put 8 kills into each half, so start-up, staging,
 * publishing and exit are each hit (the test reports where they landed:
 * on one loaded machine, 3 strata put 24 kills in 3 of those places, 2
 * strata 16 kills in 5).
 */
const IMPORT_STRATA = 2
const GC_KILLS = 8
/** Kill delays are drawn from [0, KILL_SPREAD × the clean run's wall time]. */
const KILL_SPREAD = 1.2
/** Stores the import kills run in at once. */
const LANES = 2

function write(p: string, data: Uint8Array | string, mode = 0o644): void {
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, data)
  fs.chmodSync(p, mode)
}

/**
 * The "large" tree, variant `v`: three files of 1.5-3 MiB (each over the
 * 1 MiB from which a blob is stored as a chunked pack, of 64 KiB chunks on
 * average) and a few small ones. `a.bin` is the same in every
 * variant (a whole pack the store may already hold); `c.bin` is one 2.5 MiB
 * file with a variant's own 256 KiB spliced into the middle (most of its
 * chunks are in another variant's pack); `b.bin` is the variant's own.
 */
function makeLarge(dest: string, v: number): void {
  const r = rng(1000 + v)
  write(path.join(dest, 'a.bin'), randomBytes(2 * MiB, 11))
  const c = randomBytes(2.5 * MiB, 12)
  c.set(randomBytes(256 << 10, 13 + v), MiB / 2 + Math.floor(r() * MiB))
  write(path.join(dest, 'c.bin'), c)
  write(path.join(dest, 'b.bin'), randomBytes(1.5 * MiB + Math.floor(r() * 1.5 * MiB), 20 + v))
  write(path.join(dest, 'README'), `large tree, variant ${v}\n`)
  write(path.join(dest, 'bin/run.sh'), '#!/bin/sh\nexec cat "$@"\n', 0o755)
  write(path.join(dest, 'doc/small.txt'), randomBytes(3000, 30 + v))
  fs.symlinkSync('../a.bin', path.join(dest, 'doc/link'))
}

/**
 * The "many-file" tree, variant `v`: 400-800 small files (0-8 KiB, some
 * executable) in nested directories, one symlink and one empty directory.
 * The layout is the same in every variant; 85% of the files (by default)
 * have the same content in every variant, the rest are the variant's own.
 */
function makeMany(dest: string, v: number, sharedFraction = 0.85): void {
  const layout = rng(77)
  const dirs = ['']
  for (let d = 0; d < 40; d++) dirs.push(path.join(dirs[Math.floor(layout() * dirs.length)]!, `d${d}`))
  const count = 400 + Math.floor(rng(500 + v)() * 400)
  for (let f = 0; f < count; f++) {
    const dir = dirs[Math.floor(layout() * dirs.length)]!
    const size = Math.floor(layout() * 8192)
    const exec = layout() < 0.1
    const shared = layout() < sharedFraction
    write(path.join(dest, dir, `f${f}${exec ? '.sh' : ''}`), randomBytes(size, shared ? 5000 + f : 90_000 + v * 1000 + f), exec ? 0o755 : 0o644)
  }
  fs.mkdirSync(path.join(dest, 'empty'), { recursive: true })
  fs.symlinkSync('d0', path.join(dest, 'link'))
  write(path.join(dest, 'VARIANT'), `${v}\n`)
}

interface Tree {
  name: string
  dir: string
  /** `nix-store --dump` of it, also written to `narFile`. */
  nar: Buffer
  narFile: string
  /** The store path Nix gives it. */
  storePath: string
}

/** Every file of the store's object layout (blobs, directories, PathInfos), relative. */
function objects(store: string): Set<string> {
  const out = new Set<string>()
  for (const top of ['blobs', 'dirs', 'pathinfo']) {
    const base = path.join(store, top)
    if (!fs.existsSync(base)) continue
    for (const e of fs.readdirSync(base, { recursive: true, withFileTypes: true })) {
      if (!e.isDirectory()) out.add(path.relative(store, path.join(e.parentPath, e.name)))
    }
  }
  return out
}

const listDir = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d) : [])

/** Kills `child` after `delayMs` unless it has exited by then. */
async function killAfter(run: { child: import('node:child_process').ChildProcess; exited: Promise<CliExit> }, delayMs: number): Promise<CliExit> {
  // The whole group: a syncfs helper the import started dies with it, as on a real crash.
  const timer = setTimeout(() => killGroup(run.child), delayMs)
  try {
    return await run.exited
  } finally {
    clearTimeout(timer)
  }
}

async function mustRun(args: string[], what: string): Promise<string> {
  const r = await runCli(args)
  assert.equal(r.code, 0, `${what}: ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  return r.stdout.toString()
}

/** `export-nar` of `t`'s path prints `nix-store --dump` of its tree. */
const assertExports = (store: string, t: Tree, what: string, opts?: CheckOptions) => assertExportsNar(store, t.storePath, t.nar, what, t.dir, opts)

const tally = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} ${k}`).join(', ')

// The two tests run at the same time (each kills only its own children, in its own stores).
describe('crash safety: SIGKILL at random moments', { skip: nixMissing(), concurrency: true }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-crash-'))
  const nix = new NixStore(path.join(root, 'nix'))
  const trees = new Map<string, Tree>()

  /** Trees are built on first use; "junk" is a many-file tree sharing nothing with the others. */
  function tree(kind: 'large' | 'many' | 'junk', v: number): Tree {
    const name = `${kind}-${v}`
    let t = trees.get(name)
    if (!t) {
      const dir = path.join(root, 'trees', name)
      if (kind === 'large') makeLarge(dir, v)
      else makeMany(dir, v + (kind === 'junk' ? 100 : 0), kind === 'junk' ? 0 : undefined)
      const nar = NixStore.dump(dir)
      const narFile = path.join(root, 'nars', `${name}.nar`)
      write(narFile, nar)
      t = { name, dir, nar, narFile, storePath: nix.pathOf(dir) }
      trees.set(name, t)
    }
    return t
  }

  const importArgs = (store: string, t: Tree, nar: boolean) => (nar ? ['import', '--store', store, '--nar', t.narFile, '--name', t.name] : ['import', '--store', store, t.dir])

  // Variant 0 of each kind is resident in the import test's stores (and
  // rooted in the gc test's store); it shares content with variants 1 and
  // 2, which the import runs import.
  const residentTrees = () => [tree('large', 0), tree('many', 0)]
  const targetTrees = () => [tree('large', 1), tree('large', 2), tree('many', 1), tree('many', 2)]
  /** Wall time of a clean import per target and mode ("name:nar?"). */
  const cleanMs = new Map<string, number>()

  before(async () => {
    fs.mkdirSync(nix.root, { recursive: true })
    // Each target imported cleanly once into a scratch store, per mode, one
    // at a time (before the tests, which run at the same time, load the
    // machine): the store path it must get (as Nix computes it) and how
    // long a clean run takes.
    for (const tr of targetTrees()) {
      for (const nar of [false, true]) {
        const scratch = fs.mkdtempSync(path.join(root, 'scratch-'))
        const r = await spawnCli(importArgs(scratch, tr, nar)).exited
        assert.equal(r.code, 0, r.stderr)
        assert.equal(r.stdout.toString().trim(), tr.storePath, `clean import of ${tr.name} (${nar ? 'NAR' : 'directory'}) printed another path than Nix`)
        cleanMs.set(`${tr.name}:${nar}`, r.ms)
        fs.rmSync(scratch, { recursive: true, force: true })
      }
    }
  })

  after(() => fs.rmSync(root, { recursive: true, force: true }))

  test(`${8 * IMPORT_STRATA} imports killed at random moments, each followed by verify, re-import and export`, failIfStalled(async (t) => {
    t.diagnostic(`clean import wall times: ${[...cleanMs].map(([k, ms]) => `${k.replace(':true', ' (nar)').replace(':false', '')} ${ms.toFixed(0)} ms`).join(', ')}`)

    // Stores are reused across runs, not fresh each time: kills then land
    // on a store that already holds data the import finds and relies on
    // (whole blobs, packs whose chunks a new pack borrows, Directories),
    // left behind by earlier runs, including their killed ones. After a
    // run the path is usually deleted again (`gc --delete --grace 0`, which
    // also clears what the kill left), so the next import of that tree
    // writes for real; sometimes it is kept, so some kills hit an import of
    // a path the store already has. Two such stores take alternate runs at
    // the same time (two lanes), which halves the wall time on two cores.
    const [resident, targets] = [residentTrees(), targetTrees()]
    // (target, from its NAR?) per run modulo 8, ordered so that each lane gets every tree, in both modes.
    const combos = [[0, false], [0, true], [1, true], [1, false], [2, false], [2, true], [3, true], [3, false]] as const
    const IMPORT_KILLS = combos.length * IMPORT_STRATA
    const landed = new Map<string, number>()
    let clean = 0
    const started = performance.now()
    const lane = async (l: number) => {
      const store = path.join(root, `import-store-${l}`)
      for (const [i, tr] of resident.entries()) await mustRun(['import', '--store', store, '--root', `resident-${i}`, tr.dir], 'resident import')
      const present = new Set<string>()
      for (let run = l; run < IMPORT_KILLS; run += LANES) {
        const r = rng(0xc0ffee + run)
        const [target, nar] = combos[run % combos.length]!
        const tr = targets[target]!
        const stratum = Math.floor(run / combos.length)
        const delay = ((stratum + r()) / IMPORT_STRATA) * KILL_SPREAD * cleanMs.get(`${tr.name}:${nar}`)!
        const keep = r() < 0.2
        const what = `run ${run} (${tr.name}${nar ? ' from its NAR' : ''}, kill after ${delay.toFixed(0)} ms${present.has(tr.name) ? ', path already present' : ''}; store ${store})`

        const before = objects(store)
        const killed = await killAfter(spawnCli(importArgs(store, tr, nar)), delay)
        const after = objects(store)
        const fresh = [...after].filter((o) => !before.has(o))
        const temps = listDir(path.join(store, 'tmp')).length
        const hasPath = after.has(`pathinfo/${tr.storePath.slice('/nix/store/'.length, '/nix/store/'.length + 32)}`)
        let where: string
        if (killed.signal !== 'SIGKILL') {
          assert.equal(killed.code, 0, `${what}: the import failed on its own: ${killed.stderr}`)
          where = 'after the import had exited'
        } else if (present.has(tr.name)) where = 'on an import of a path already present'
        else if (hasPath) where = 'after the PathInfo was written'
        else if (fresh.length > 0) where = 'after some objects were published'
        else if (temps > 0) where = 'while staging (temp files only)'
        else where = 'before anything was written'
        landed.set(where, (landed.get(where) ?? 0) + 1)

        await assertVerifies(store, what)
        const again = await mustRun(importArgs(store, tr, nar), `${what}, re-import`)
        assert.equal(again.trim(), tr.storePath, `${what}: the re-import printed another path`)
        await assertExports(store, tr, what)
        if (keep) present.add(tr.name)
        else {
          await mustRun(['gc', '--store', store, '--delete', '--grace', '0', tr.storePath], `${what}, deleting the path again`)
          present.delete(tr.name)
        }
        clean++
      }
      // The resident paths lived through every run, and the store is still clean.
      await assertVerifies(store, `store ${l} after all runs`, { cli: true })
      for (const tr of resident) await assertExports(store, tr, `store ${l} after all runs`, { cli: true })
      for (const name of present) await assertExports(store, trees.get(name)!, `store ${l} after all runs`, { cli: true })
    }
    // Both lanes run to their end (or first failure) before the verdict, so none outlives the test.
    const lanes = await Promise.allSettled(Array.from({ length: LANES }, (_, l) => lane(l)))
    for (const r of lanes) if (r.status === 'rejected') throw r.reason
    t.diagnostic(`${IMPORT_KILLS} kills: ${clean} clean (verify, re-import, export) in ${((performance.now() - started) / 1000).toFixed(1)} s; kills landed ${tally(landed)}`)
    // Where the kills landed depends on the machine's load (the spread is
    // over a clean run's wall time, measured once): reported, not asserted.
    assert.equal(clean, IMPORT_KILLS)
  }))

  test(`${GC_KILLS} gc --prune runs killed at random moments; rooted paths stay whole, a later gc finishes`, failIfStalled(async (t) => {
    const store = path.join(root, 'gc-store')
    // Rooted: a large and a many-file tree. Garbage: three more trees of
    // both kinds sharing most of their content with the rooted ones, so the
    // sweep has to tell shared objects (kept) from their own (deleted), and
    // two sharing nothing, so that there is plenty to delete.
    const rooted = residentTrees()
    const garbage = [tree('large', 1), tree('many', 1), tree('many', 2), tree('junk', 0), tree('junk', 1)]
    for (const [i, tr] of rooted.entries()) await mustRun(['import', '--store', store, '--root', `keep-${i}`, tr.dir], 'rooted import')
    const fill = () => mustRun(['import', '--store', store, ...garbage.map((g) => g.dir)], 'filling the store with garbage')
    const gcArgs = ['gc', '--store', store, '--prune', '--grace', '0']

    // A clean gc over a full store: its wall time spreads the kills.
    await fill()
    const full = objects(store).size
    const cleanRun = await spawnCli(gcArgs).exited
    assert.equal(cleanRun.code, 0, cleanRun.stderr)
    const minimal = objects(store)
    t.diagnostic(`clean gc: ${cleanRun.ms.toFixed(0)} ms, ${full} objects -> ${minimal.size}`)
    await assertVerifies(store, 'after a clean gc')

    const landed = new Map<string, number>()
    let clean = 0
    const started = performance.now()
    for (let run = 0; run < GC_KILLS; run++) {
      const r = rng(0x9c + run)
      const delay = ((run + r()) / GC_KILLS) * KILL_SPREAD * cleanRun.ms
      const what = `gc run ${run} (kill after ${delay.toFixed(0)} ms)`
      await fill()
      const before = objects(store).size
      const killed = await killAfter(spawnCli(gcArgs), delay)
      const left = objects(store).size
      let where: string
      if (killed.signal !== 'SIGKILL') {
        assert.equal(killed.code, 0, `${what}: gc failed on its own: ${killed.stderr}`)
        where = 'after gc had exited'
      } else if (left === before) where = 'before anything was deleted'
      else if (left === minimal.size) where = 'after everything was deleted'
      else where = 'midway through the deletions'
      landed.set(where, (landed.get(where) ?? 0) + 1)

      await assertVerifies(store, what)
      for (const tr of rooted) await assertExports(store, tr, what)
      clean++
    }
    // A gc afterwards finishes, removes every leftover (garbage, temp files,
    // stale tokens), and the store is clean with the rooted paths whole.
    const last = await runCli(gcArgs)
    assert.equal(last.code, 0, last.stderr)
    await assertVerifies(store, 'after the final gc', { cli: true })
    for (const tr of rooted) await assertExports(store, tr, 'after the final gc', { cli: true })
    assert.deepEqual([...objects(store)].sort(), [...minimal].sort(), 'the final gc left other objects than a clean gc')
    assert.deepEqual(listDir(path.join(store, 'tmp')), [])
    assert.deepEqual(listDir(path.join(store, 'locks')).filter((n) => n !== 'epoch'), [])
    t.diagnostic(`${GC_KILLS} gc kills: ${clean} clean (verify, rooted exports) in ${((performance.now() - started) / 1000).toFixed(1)} s; kills landed ${tally(landed)}`)
    assert.equal(clean, GC_KILLS)
  }))

  test(`${GC_KILLS} gc runs killed while compacting a bundle shared by a live and a dead path`, failIfStalled(async (t) => {
    // A garbage many-file tree imported first holds, in its bundle, most of
    // what the rooted one imported after it uses (found stored, not written
    // again): gc must copy those members to a new bundle, make it durable,
    // then delete the old one. Each run starts from a copy of that store.
    const template = path.join(root, 'compact-template')
    const [garbage, rooted] = [tree('many', 2), tree('many', 0)]
    await mustRun(['import', '--store', template, garbage.dir], 'garbage import')
    await mustRun(['import', '--store', template, '--root', 'keep', rooted.dir], 'rooted import')
    const gcArgs = (store: string) => ['gc', '--store', store, '--prune', '--grace', '0']
    const first = path.join(root, 'compact-clean')
    fs.cpSync(template, first, { recursive: true })
    const cleanRun = await spawnCli(gcArgs(first)).exited
    assert.equal(cleanRun.code, 0, cleanRun.stderr)
    const minimal = objects(first)
    const bundles = (store: string) => listDir(path.join(store, 'blobs', 'bundles'))
    assert.ok(bundles(first).some((b) => !bundles(template).includes(b)), 'the clean gc rewrote a bundle')
    const landed = new Map<string, number>()
    let clean = 0
    for (let run = 0; run < GC_KILLS; run++) {
      const r = rng(0xb0 + run)
      const delay = ((run + r()) / GC_KILLS) * KILL_SPREAD * cleanRun.ms
      const what = `compacting gc run ${run} (kill after ${delay.toFixed(0)} ms)`
      const store = path.join(root, `compact-${run}`)
      fs.cpSync(template, store, { recursive: true })
      const killed = await killAfter(spawnCli(gcArgs(store)), delay)
      const names = bundles(store)
      const where =
        killed.signal !== 'SIGKILL'
          ? 'after gc had exited'
          : names.every((b) => bundles(template).includes(b))
            ? 'before the new bundle was published'
            : names.some((b) => !bundles(first).includes(b))
              ? 'between publishing the new bundle and deleting the old'
              : 'after the compaction'
      if (killed.signal !== 'SIGKILL') assert.equal(killed.code, 0, `${what}: gc failed on its own: ${killed.stderr}`)
      landed.set(where, (landed.get(where) ?? 0) + 1)
      await assertVerifies(store, what)
      await assertExports(store, rooted, what)
      // A later gc finishes the job: the same objects as a clean run.
      await mustRun(gcArgs(store), `${what}, a later gc`)
      assert.deepEqual([...objects(store)].sort(), [...minimal].sort(), `${what}: the later gc left other objects than a clean gc`)
      await assertExports(store, rooted, `${what}, after a later gc`)
      fs.rmSync(store, { recursive: true, force: true })
      clean++
    }
    t.diagnostic(`${GC_KILLS} compacting gc kills: ${clean} clean; kills landed ${tally(landed)}`)
    assert.equal(clean, GC_KILLS)
  }))
})
