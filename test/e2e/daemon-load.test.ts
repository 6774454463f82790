/**
 * Load test: one daemon (TCP, ephemeral port, fresh store) and a storm of
 * concurrent CLI processes against it — imports of six overlapping trees
 * (several processes per tree) mixed with export-nar / ls / cat readers of
 * paths imported beforehand. Afterwards the store must be consistent (every
 * path exports the NAR `nix-store --dump` gives for its tree, every blob's
 * name is its BLAKE3, nothing is left in tmp/), the daemon's RSS must have
 * stayed bounded, and SIGTERM must stop it with exit code 0.
 *
 * Prints `daemon-load: peak daemon RSS <n> MiB` (its own line) and the
 * storm's wall time, for reports.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { after, before, describe, test } from 'node:test'
import { readBundleIndex } from '../../src/backends/local/bundle.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { readAll } from '../../src/castore/blob-service.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { type CliResult, runCli } from '../helpers/cli.js'
import { exportNarOutput } from '../helpers/ops.js'
import { openStore } from '../../src/backends/open-store.js'
import { importPath } from '../../src/ops/import-paths.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { nixMissing, NixStore } from '../helpers/nix.js'
import { failIfStalled, rssKiB } from '../helpers/spawn.js'
import { randomBytes, rng } from '../helpers/trees.js'

const TREE_COUNT = 6
const SMALL_FILES = 300
/** Files 0..SHARED-1 have the same content in every tree; the rest are the tree's own. */
const SHARED = 270
const BIG = 2 * 1024 * 1024
const IMPORTERS_PER_TREE = 4
const RSS_LIMIT_MIB = 400

/**
 * Tree `i`: 300 small files (0–6 KiB, ~10% executable) in 12 nested
 * directories plus two symlinks, and one 2 MiB file. Most small files are
 * shared by all trees; the 2 MiB file is shared by every other tree, so
 * several processes upload the same big blob at the same moment.
 */
function makeLoadTree(dest: string, i: number): void {
  const r = rng(0x10ad) // same layout in every tree
  const dirs = ['']
  for (let d = 0; d < 12; d++) dirs.push(path.join(dirs[Math.floor(r() * dirs.length)]!, `d${d}`))
  for (const d of dirs) fs.mkdirSync(path.join(dest, d), { recursive: true })
  for (let f = 0; f < SMALL_FILES; f++) {
    const dir = dirs[Math.floor(r() * dirs.length)]!
    const size = Math.floor(r() * 6144)
    const exec = r() < 0.1
    const seed = f < SHARED ? 50_000 + f : 60_000 + i * 1000 + f
    const p = path.join(dest, dir, `f${f}${exec ? '.sh' : '.dat'}`)
    fs.writeFileSync(p, randomBytes(size, seed))
    if (exec) fs.chmodSync(p, 0o755)
  }
  fs.writeFileSync(path.join(dest, 'id'), `tree ${i}\n`)
  fs.symlinkSync('id', path.join(dest, 'link-to-id'))
  fs.symlinkSync('/nonexistent/dangling', path.join(dest, dirs[1]!, 'dangling'))
  fs.writeFileSync(path.join(dest, 'big.bin'), randomBytes(BIG, 70_000 + (i % 2)))
}

/** Every file under `dir`, relative. */
function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
}

describe('daemon under load: many concurrent clients', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-load-'))
  const store = path.join(root, 'daemon-store')
  const local = path.join(root, 'local-store')
  const trees: string[] = []
  /** Store path of each tree, from a local-store import. */
  const want: string[] = []
  /** The NAR each tree must export: `nix-store --dump` of it, else a local-store export. */
  const wantNar: Buffer[] = []
  let daemon: RunningDaemon
  let stopped = false

  before(async () => {
    for (let i = 0; i < TREE_COUNT; i++) {
      const t = path.join(root, 'trees', `load-${i}`)
      makeLoadTree(t, i)
      trees.push(t)
    }
    const noNix = nixMissing()
    if (noNix) console.log(`daemon-load: NAR comparison against nix-store --dump skipped (${noNix}); comparing against local-store exports instead`)
    // References, computed without the daemon, in-process (the import op; the clients below are CLI processes).
    const opened = await openStore({ url: local })
    try {
      for (const [i, t] of trees.entries()) want[i] = (await importPath(opened, t)).storePath
    } finally {
      await opened.close()
    }
    for (const [i, t] of trees.entries()) {
      if (noNix) {
        const r = await runCli(['export-nar', '--store', local, want[i]!])
        assert.equal(r.code, 0, r.stderr)
        wantNar[i] = r.stdout
      } else {
        wantNar[i] = NixStore.dump(t)
      }
    }
    daemon = await startDaemon(store, `127.0.0.1:${await freePort()}`)
  })

  after(async () => {
    if (daemon && !stopped) await daemon.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test(`${TREE_COUNT * IMPORTERS_PER_TREE} concurrent imports mixed with readers, then a consistent store and a clean stop`, failIfStalled(async () => {
    const url = daemon.url
    assert.match(url, /^grpc\+http:\/\/127\.0\.0\.1:\d+$/)
    const pid = daemon.proc.pid!

    // Paths the readers use exist before the storm: trees 0 and 1.
    for (const i of [0, 1]) {
      const r = await runCli(['import', '--store', url, trees[i]!])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout.toString().trim(), want[i])
    }
    const lsWant = await runCli(['ls', '-lR', '--store', local, want[0]!])
    assert.equal(lsWant.code, 0, lsWant.stderr)
    const bigOf = (i: number) => fs.readFileSync(path.join(trees[i]!, 'big.bin'))

    // The storm: every process is started at once.
    type Job = { what: string; args: string[]; check: (r: CliResult) => void }
    const jobs: Job[] = []
    for (let k = 0; k < IMPORTERS_PER_TREE; k++) {
      for (let i = 0; i < TREE_COUNT; i++) {
        jobs.push({
          what: `import load-${i} #${k}`,
          args: ['import', '--store', url, trees[i]!],
          check: (r) => assert.equal(r.stdout.toString().trim(), want[i], `import load-${i} #${k} printed another path`),
        })
      }
    }
    for (let k = 0; k < 4; k++) {
      const i = k % 2
      jobs.push({ what: `export-nar load-${i} #${k}`, args: ['export-nar', '--store', url, want[i]!], check: (r) => assert.ok(r.stdout.equals(wantNar[i]!), `export-nar load-${i} #${k}: NAR differs`) })
    }
    for (let k = 0; k < 3; k++) {
      jobs.push({ what: `ls -lR load-0 #${k}`, args: ['ls', '-lR', '--store', url, want[0]!], check: (r) => assert.equal(r.stdout.toString(), lsWant.stdout.toString()) })
    }
    for (let k = 0; k < 3; k++) {
      const i = k % 2
      jobs.push({ what: `cat load-${i}/big.bin #${k}`, args: ['cat', '--store', url, `${want[i]}/big.bin`], check: (r) => assert.ok(r.stdout.equals(bigOf(i)), `cat load-${i}/big.bin: bytes differ`) })
    }
    for (let k = 0; k < 2; k++) {
      jobs.push({ what: `cat load-${k}/id #${k}`, args: ['cat', '--store', url, `${want[k]}/id`], check: (r) => assert.equal(r.stdout.toString(), `tree ${k}\n`) })
    }
    assert.ok(jobs.length >= 32, `only ${jobs.length} clients`)

    let peakKiB = rssKiB(pid) ?? 0
    const startKiB = peakKiB
    let samples = 0
    const sampler = setInterval(() => {
      const v = rssKiB(pid)
      if (v !== undefined) {
        samples++
        if (v > peakKiB) peakKiB = v
      }
    }, 100)
    const t0 = performance.now()
    let results: CliResult[]
    try {
      results = await Promise.all(jobs.map((j) => runCli(j.args)))
    } finally {
      clearInterval(sampler)
    }
    const stormMs = performance.now() - t0
    const afterKiB = rssKiB(pid) ?? 0
    const hwmKiB = rssKiB(pid, 'VmHWM')
    if (afterKiB > peakKiB) peakKiB = afterKiB

    const failed = results.flatMap((r, i) => (r.code === 0 ? [] : [`${jobs[i]!.what}: exit ${r.code}: ${r.stderr.trim()}`]))
    assert.deepEqual(failed, [], `${failed.length} of ${jobs.length} clients failed`)
    for (const [i, r] of results.entries()) jobs[i]!.check(r)
    // Imports of the same tree printed the same path (checked against the local import above, so also across trees' processes).
    for (let i = 0; i < TREE_COUNT; i++) {
      const printed = new Set(results.filter((_, j) => jobs[j]!.what.startsWith(`import load-${i} `)).map((r) => r.stdout.toString()))
      assert.equal(printed.size, 1, `load-${i}: imports printed ${[...printed].join(' / ')}`)
    }

    // Consistency afterwards: every path exports exactly its tree's NAR through the daemon (in-process gRPC client) …
    for (const [i, p] of want.entries()) {
      const nar = await exportNarOutput(url, p)
      assert.ok(nar.equals(wantNar[i]!), `export-nar ${p} differs from the reference NAR (${nar.length} vs ${wantNar[i]!.length} bytes)`)
    }
    // … there is one PathInfo per tree, every blob is named by its BLAKE3, and tmp/ is empty.
    assert.equal(listFiles(path.join(store, 'pathinfo')).length, TREE_COUNT)
    const blobDir = path.join(store, 'blobs')
    const blobs = listFiles(blobDir)
    // Small Puts are committed together into bundles (daemon --put-window): their members count, each read back checked.
    const members = blobs.filter((b) => b.endsWith('.bundle')).flatMap((b) => [...(readBundleIndex(path.join(blobDir, b), path.basename(b, '.bundle'))?.members() ?? [])].map((m) => m.hex))
    const stored = blobs.length - blobs.filter((b) => b.endsWith('.bundle')).length + members.length
    assert.ok(stored > SHARED, `only ${stored} blobs`)
    const reader = await openLocalStore(store)
    for (const hex of members) {
      const data = await readAll((await reader.blobs.open(Buffer.from(hex, 'hex')))!)
      assert.equal(toHex(b3(data)), hex, `bundle member ${hex} is corrupt`)
    }
    for (const b of blobs) {
      if (b.endsWith('.bundle')) continue
      if (b.endsWith('.pack')) {
        // A chunked blob: reading it through the store re-hashes every chunk and the whole.
        const hex = path.basename(b, '.pack')
        const data = await readAll((await reader.blobs.open(Buffer.from(hex, 'hex')))!)
        assert.equal(toHex(b3(data)), hex, `pack ${b} is corrupt`)
      } else {
        assert.equal(toHex(b3(fs.readFileSync(path.join(blobDir, b)))), path.basename(b), `blob ${b} is corrupt`)
      }
    }
    assert.deepEqual(listFiles(path.join(store, 'tmp')), [], 'files left in <store>/tmp/')

    // Bounded memory.
    const peakMiB = peakKiB / 1024
    console.log(
      `daemon-load: ${jobs.length} concurrent clients (${TREE_COUNT * IMPORTERS_PER_TREE} imports, ${jobs.length - TREE_COUNT * IMPORTERS_PER_TREE} readers) finished in ${(stormMs / 1000).toFixed(1)} s; ` +
        `daemon RSS ${(startKiB / 1024).toFixed(1)} MiB before, ${(afterKiB / 1024).toFixed(1)} MiB after (${samples} samples every 100 ms; kernel VmHWM ${hwmKiB === undefined ? '?' : (hwmKiB / 1024).toFixed(1)} MiB)`,
    )
    console.log(`daemon-load: peak daemon RSS ${peakMiB.toFixed(1)} MiB`)
    if (samples > 0) assert.ok(peakMiB < RSS_LIMIT_MIB, `daemon peak RSS ${peakMiB.toFixed(1)} MiB, limit ${RSS_LIMIT_MIB} MiB`)
    else console.log('daemon-load: RSS not sampled (no /proc/<pid>/status here)')

    // A clean stop.
    stopped = true
    const code = await daemon.stop()
    assert.equal(code, 0, `daemon exit code ${code}: ${daemon.log().slice(-2000)}`)
    assert.match(daemon.log(), /stopped/)
    assert.doesNotMatch(daemon.log(), /failed/, 'the daemon logged failed calls')
  }))
})
