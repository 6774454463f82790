/**
 * gc against everything else at once.
 *
 * One storm on three stores: six processes import overlapping trees
 * into store M (each with `--root`, added in the import's own write
 * session), a feeder imports unrooted garbage trees into M over and over,
 * and one loop runs `gc --grace 0` and `gc --prune --grace 0` on M back to
 * back. Each imported path is copied, as soon as it is there, to a second
 * local store L and to a daemon serving store D, and another loop runs
 * `gc --grace 0` on D's directory while the daemon serves it. Every tree
 * shares most of its files with every other (garbage included), and two
 * large files share chunks across trees, so gc keeps deciding about
 * objects that some import has just found stored and relies on.
 *
 * Afterwards every process must have exited 0, every path must export,
 * from every store, the NAR `nix-store --dump` gives for its tree, and
 * `verify` must be clean on all three stores. A second test runs two gc
 * processes at once on one store.
 *
 * A copy to a daemon is one write session per call there (blob Stats and
 * Puts, Directory Puts, then the PathInfo Put); what its lookups found and
 * its Puts sent is kept by the daemon's temp roots for its connection, not
 * by a grace period, so D is collected with `--grace 0` too. (With grace
 * alone, under load, such copies were refused with FAILED_PRECONDITION.)
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { after, before, describe, test } from 'node:test'
import { type CliResult, runCli, spawnCli } from '../helpers/cli.js'
import { openStore } from '../../src/backends/open-store.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { nixMissing, NixStore } from '../helpers/nix.js'
import { failIfStalled } from '../helpers/spawn.js'
import { assertExportsNar, assertVerifies, type CheckOptions } from '../helpers/store-checks.js'
import { randomBytes, rng } from '../helpers/trees.js'

const MiB = 1 << 20
/** Distinct small-file contents the trees draw from (so any two trees share about half their files). */
const POOL = 600
const FILES = 300
const SEEDS = [0, 1]
/**
 * Six importers (eight before): with the copies (16), the feeder and the two gc loops,
 * still several times more writers than the two cores run at once, so gc still decides while
 * imports and copies are mid-session; each extra importer only repeated the same paths.
 */
const IMPORTERS = [2, 3, 4, 5, 6, 7]
const GARBAGE = [10, 11, 12]

/**
 * Tree `id`: 300 small files (up to 6 KiB, some executable) drawn from a
 * shared pool of contents, in nested directories laid out alike in every
 * tree; `shared.bin` (1.5 MiB, the same in every tree: one pack that several
 * processes write at once) and `mixed.bin` (2 MiB, a common base with the
 * tree's own 128 KiB spliced in: most of its chunks are in other trees'
 * packs). Both are over the 1 MiB from which a blob is a pack of 64 KiB
 * chunks on average; twice these sizes only moved more bytes the same way.
 */
function makeTree(dest: string, id: number): void {
  const layout = rng(31)
  const dirs = ['']
  for (let d = 0; d < 20; d++) dirs.push(path.join(dirs[Math.floor(layout() * dirs.length)]!, `d${d}`))
  for (const d of dirs) fs.mkdirSync(path.join(dest, d), { recursive: true })
  const r = rng(0x5eed + id)
  for (let f = 0; f < FILES; f++) {
    const pick = Math.floor(r() * POOL)
    const p = path.join(dest, dirs[Math.floor(r() * dirs.length)]!, `f${f}`)
    fs.writeFileSync(p, randomBytes((pick * 7919) % 6144, 7000 + pick))
    if (pick % 11 === 0) fs.chmodSync(p, 0o755)
  }
  fs.writeFileSync(path.join(dest, 'shared.bin'), randomBytes(1.5 * MiB, 4242))
  const mixed = randomBytes(2 * MiB, 4343)
  mixed.set(randomBytes(128 << 10, 4400 + id), MiB / 2 + id * 60_000)
  fs.writeFileSync(path.join(dest, 'mixed.bin'), mixed)
  fs.writeFileSync(path.join(dest, 'id'), `tree ${id}\n`)
  fs.symlinkSync('id', path.join(dest, dirs[3]!, 'link'))
}

interface Tree {
  id: number
  dir: string
  nar: Buffer
  storePath: string
}

interface Ran {
  what: string
  r: CliResult
}

/** Every file of the store's object layout (blobs, directories, PathInfos), relative. */
function objects(store: string): string[] {
  const out: string[] = []
  for (const top of ['blobs', 'dirs', 'pathinfo']) {
    const base = path.join(store, top)
    if (!fs.existsSync(base)) continue
    for (const e of fs.readdirSync(base, { recursive: true, withFileTypes: true })) {
      if (!e.isDirectory()) out.push(path.relative(store, path.join(e.parentPath, e.name)))
    }
  }
  return out.sort()
}

/** How the daemon refuses a PathInfo whose data is not (or no longer) all stored. */

const failures = (runs: Ran[]) => runs.filter((x) => x.r.code !== 0).map((x) => `${x.what}: exit ${x.r.code}: ${x.r.stderr.trim()}`)

/** What a gc run deleted, from its summary line: [paths, objects]. */
function deleted(r: { stderr: string }): [number, number] {
  const m = /(\d+) store paths? deleted, (\d+) objects?/.exec(r.stderr)
  return m ? [Number(m[1]), Number(m[2])] : [0, 0]
}

/** Runs `args(i)` for i = 0, 1, … one after another until `stop()` says so (at least once). */
async function loop(runs: Ran[], what: string, stop: () => boolean, args: (i: number) => string[]): Promise<void> {
  let i = 0
  do {
    const a = args(i++)
    runs.push({ what: `${what}: ${a.join(' ')}`, r: await runCli(a) })
  } while (!stop())
}

/**
 * export-nar of each tree's path from `store` (a directory or URL) equals
 * `nix-store --dump` of the tree; in-process unless `cli` (the checks
 * after the storm and each double gc: test/helpers/store-checks.ts).
 */
async function assertExports(store: string, trees: Tree[], what: string, opts?: CheckOptions): Promise<void> {
  for (const t of trees) await assertExportsNar(store, t.storePath, t.nar, what, `tree ${t.id}`, opts)
}

describe('gc while imports, copies and a daemon write', { skip: nixMissing() }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-gcconc-'))
  const M = path.join(root, 'store-m')
  const L = path.join(root, 'store-l')
  const D = path.join(root, 'store-d')
  const trees = new Map<number, Tree>()
  const treesOf = (ids: number[]) => ids.map((id) => trees.get(id)!)
  let daemon: RunningDaemon | undefined
  /** Copies to the daemon in the storm, and the failed ones. */

  before(async () => {
    const nix = new NixStore(path.join(root, 'nix'))
    fs.mkdirSync(nix.root, { recursive: true })
    for (const id of [...SEEDS, ...IMPORTERS, ...GARBAGE]) {
      const dir = path.join(root, 'trees', `tree-${id}`)
      makeTree(dir, id)
      trees.set(id, { id, dir, nar: NixStore.dump(dir), storePath: nix.pathOf(dir) })
    }
    // The seed paths are in M (rooted) before the storm: copies start at once.
    for (const t of treesOf(SEEDS)) {
      const r = await runCli(['import', '--store', M, '--root', `seed-${t.id}`, t.dir])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout.toString().trim(), t.storePath)
    }
    // D exists before gc loops on it (gc on a store not created yet is an error); a garbage tree makes it.
    const seedD = await runCli(['import', '--store', D, trees.get(GARBAGE[0]!)!.dir])
    assert.equal(seedD.code, 0, seedD.stderr)
    daemon = await startDaemon(D, `127.0.0.1:${await freePort()}`)
  })

  after(async () => {
    if (daemon) {
      const code = await daemon.stop()
      assert.equal(code, 0, `daemon exit code ${code}: ${daemon.log().slice(-2000)}`)
    }
    fs.rmSync(root, { recursive: true, force: true })
  })

  test(`${IMPORTERS.length} imports, a garbage feeder, copies to a local store and a daemon, gc loops on M and D`, failIfStalled(async (t) => {
    const url = daemon!.url
    const work: Ran[] = []
    const gcM: Ran[] = []
    const gcD: Ran[] = []
    const feeder: Ran[] = []
    let storming = true
    const stop = () => !storming
    const started = performance.now()

    const loops = Promise.all([
      loop(gcM, 'gc M', stop, (i) => (i % 2 ? ['gc', '--store', M, '--prune', '--grace', '0'] : ['gc', '--store', M, '--grace', '0'])),
      loop(gcD, 'gc D', stop, () => ['gc', '--store', D, '--grace', '0']),
      loop(feeder, 'garbage', stop, (i) => ['import', '--store', M, trees.get(GARBAGE[i % GARBAGE.length]!)!.dir]),
    ])
    const copies = (tr: Tree) =>
      Promise.all(
        [L, url].map(async (to) => {
          const args = ['copy', '--from', M, '--to', to, tr.storePath]
          work.push({ what: `copy tree ${tr.id} to ${to === L ? 'L' : 'the daemon'}`, r: await runCli(args) })
        }),
      )
    const storm = [
      ...treesOf(SEEDS).map(copies),
      ...treesOf(IMPORTERS).map(async (tr) => {
        const r = await runCli(['import', '--store', M, '--root', `imp-${tr.id}`, tr.dir])
        work.push({ what: `import tree ${tr.id}`, r })
        if (r.code === 0) {
          assert.equal(r.stdout.toString().trim(), tr.storePath, `import tree ${tr.id} printed another path than Nix`)
          await copies(tr)
        }
      }),
    ]
    const settled = await Promise.allSettled(storm)
    storming = false
    await loops
    const stormS = (performance.now() - started) / 1000
    for (const s of settled) if (s.status === 'rejected') throw s.reason

    const sum = (runs: Ran[]) => runs.map((x) => deleted(x.r)).reduce(([p, o], [p2, o2]) => [p + p2, o + o2], [0, 0])
    const [mPaths, mObjects] = sum(gcM)
    const [, dObjects] = sum(gcD)
    t.diagnostic(
      `storm: ${work.length} imports and copies, ${feeder.length} garbage imports, ${gcM.length} gc runs on M (deleted ${mPaths} paths, ${mObjects} objects), ` +
        `${gcD.length} gc runs on D (deleted ${dObjects} objects), in ${stormS.toFixed(1)} s`,
    )
    const failed = [...failures(work), ...failures(feeder), ...failures(gcM), ...failures(gcD)]
    assert.deepEqual(failed, [], `${failed.length} processes failed`)
    assert.equal(work.length, IMPORTERS.length + 2 * (IMPORTERS.length + SEEDS.length))
    const all = treesOf([...SEEDS, ...IMPORTERS])

    // Every path, from every store, is exactly its tree; every store verifies.
    // In-process, but verify through the CLI once per store.
    await assertExports(M, all, 'store M')
    await assertExports(L, all, 'store L')
    await assertExports(url, all, 'store D (through the daemon)')
    for (const [name, s] of [['M', M], ['L', L], ['D', D]] as const) await assertVerifies(s, `store ${name}`, { cli: true })
  }))

  test('a daemon notices a sweep that came before its first write session', async () => {
    // The daemon fills its chunk index on a Stat, outside any write
    // session; a sweep then deletes a pack; the daemon's first write session
    // must forget the index, or a new pack borrows chunks from the deleted one.
    const E = path.join(root, 'store-e')
    const [a, b] = [path.join(root, 'epoch-a'), path.join(root, 'epoch-b')]
    const big = randomBytes(3 * MiB, 9001)
    fs.mkdirSync(a)
    fs.writeFileSync(path.join(a, 'big.bin'), big)
    big.set(randomBytes(4096, 9002), MiB)
    fs.mkdirSync(b)
    fs.writeFileSync(path.join(b, 'big.bin'), big)
    const nar = NixStore.dump(b)
    const pa = await runCli(['import', '--store', E, a])
    assert.equal(pa.code, 0, pa.stderr)
    // Its PathInfo goes, its pack stays (younger than --grace): unreferenced.
    const del = await runCli(['gc', '--store', E, '--delete', '--grace', '1h', pa.stdout.toString().trim()])
    assert.equal(del.code, 0, del.stderr)
    const d = await startDaemon(E, `127.0.0.1:${await freePort()}`)
    try {
      const client = await openStore({ url: d.url })
      try {
        assert.equal(await client.blobs.has(new Uint8Array(32).fill(7)), false)
      } finally {
        await client.close()
      }
      const gc = await runCli(['gc', '--store', E, '--grace', '0'])
      assert.equal(gc.code, 0, gc.stderr)
      assert.deepEqual(deleted(gc), [0, 2], `gc deleted other than the pack and its directory: ${gc.stderr}`)
      const imp = await runCli(['import', '--store', d.url, b])
      assert.equal(imp.code, 0, imp.stderr)
      await assertVerifies(E, 'the daemon store')
      const exp = await runCli(['export-nar', '--store', d.url, imp.stdout.toString().trim()])
      assert.equal(exp.code, 0, exp.stderr)
      assert.ok(exp.stdout.equals(nar), 'export-nar differs from nix-store --dump')
    } finally {
      assert.equal(await d.stop(), 0, d.log())
    }
  })

  // Runs on M as the storm left it (its eight rooted paths).
  test('two gc runs at once on one store both succeed and leave it clean', failIfStalled(async (t) => {
    const rooted = treesOf([...SEEDS, ...IMPORTERS])
    const garbage = treesOf(GARBAGE)
    const fill = async () => {
      const r = await runCli(['import', '--store', M, ...garbage.map((g) => g.dir)])
      assert.equal(r.code, 0, r.stderr)
    }
    // What M holds once the garbage is gone: the rooted paths' objects.
    const first = await runCli(['gc', '--store', M, '--prune', '--grace', '0'])
    assert.equal(first.code, 0, first.stderr)
    const minimal = objects(M)
    const prune = ['gc', '--store', M, '--prune', '--grace', '0']
    const plain = ['gc', '--store', M, '--grace', '0']
    const rounds: Array<[string, string[], string[]]> = [
      ['prune + prune', prune, prune],
      ['prune + default', prune, plain],
      ['default + default', plain, plain],
    ]
    const lines: string[] = []
    for (const [what, a, b] of rounds) {
      await fill()
      if (what === 'default + default') {
        // Default gc deletes only objects no PathInfo reaches: delete the
        // garbage paths alone (their data is younger than --grace, so it
        // stays) and leave their data to the two plain runs.
        const r = await runCli(['gc', '--store', M, '--delete', '--grace', '1h', ...garbage.map((g) => g.storePath)])
        assert.equal(r.code, 0, r.stderr)
        assert.deepEqual(deleted(r), [garbage.length, 0])
      }
      const [ra, rb] = await Promise.all([spawnCli(a).exited, spawnCli(b).exited])
      assert.equal(ra.code, 0, `${what}: ${a.join(' ')}: ${ra.stderr}`)
      assert.equal(rb.code, 0, `${what}: ${b.join(' ')}: ${rb.stderr}`)
      const [pa, oa] = deleted(ra)
      const [pb, ob] = deleted(rb)
      lines.push(`${what}: ${pa}+${pb} paths, ${oa}+${ob} objects deleted`)
      await assertVerifies(M, what)
      await assertExports(M, rooted, what)
      // Between them they deleted all the garbage and nothing else.
      assert.deepEqual(objects(M), minimal, `${what}: the store holds other objects than the rooted paths'`)
    }
    t.diagnostic(lines.join('; '))
  }))
})
