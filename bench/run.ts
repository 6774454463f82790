/**
 * `npm run bench`: times our CLI (node bin/run.js) against real Nix
 * (nix-store) on the same seeded inputs, in the same run, and prints
 * ours/nix ratios (< 1 means we are faster), wall and CPU (GNU time). Every
 * figure of issue 14's targets has its row, with the reference measured in
 * the same run, the target and whether it is met:
 *  - nix: import / re-import / export-nar of many-small (15k files), mixed
 *    and few-large against nix-store --add / --dump;
 *  - startup: cold start of ls, cat, narinfo and path-info against a bare
 *    `node -e 0` in the same round;
 *  - grown (bench/grown.ts): cat and imports in a store after many imports
 *    against a store of one or two (what grows with the store's size);
 *  - daemon (bench/daemon.ts): the CLI through a gRPC daemon on loopback
 *    against a local store (gRPC blob put/read, import, export-nar of
 *    many-small, copy, daemon RSS under 32 readers), the second copy of a
 *    slightly changed tree, and one 1 GiB file copied daemon → local and
 *    local → daemon against `cat` of it through the daemon (section copy);
 *  - big (bench/big.ts): time, CPU and peak RSS of import, export-nar and
 *    copy of one seeded 2 GiB file against Nix;
 *  - space (bench/space.ts): disk used by two releases of a tree;
 *  - gc (bench/gc.ts): gc and verify on a store of ~100k objects;
 *  - cache (bench/cache.ts, issue 13): real Nix against our daemon's HTTP
 *    binary cache, our copy --from nix+file:// against Nix's;
 *  - shared (bench/shared.ts, issue 15): a store on S3 + PostgreSQL through
 *    a daemon against a local one and the CLI, what it sends and holds, gc.
 * Results also go to .bench/last.json.
 *
 * Knobs (environment): BENCH_QUICK=1 (bench/quick.ts: every part on smaller
 * inputs, one run each, under 2 minutes idle; the tables say [quick]),
 * BENCH_REPS (default 3, quick 1), BENCH_STARTUP_RUNS (default 30, quick 15),
 * BENCH_BIG_REPS (runs per tool in the big part, default 1), BENCH_PARTS
 * (comma-separated subset of nix,daemon,startup,grown,space,big,gc,cache,shared; default all, but
 * BENCH_QUICK=1 leaves out shared unless named),
 * BENCH_KEEP=1 keeps the temp dir for inspection.
 */
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { randomBytes, rng, TREES } from '../test/helpers/trees.js'
import { BIG_BYTES, benchBig } from './big.js'
import { benchCache } from './cache.js'
import { benchGc, GC_TREE_FILES, gcTable, type GcRow } from './gc.js'
import { benchDaemon, COPY_BYTES } from './daemon.js'
import { benchGrown, GROWN_IMPORTS } from './grown.js'
import { benchShared, printShared, type SharedResult } from './shared.js'
import { benchSpace, type SpaceResult, spaceTable } from './space.js'
import { QUICK, sized, sizeText } from './quick.js'
import { fmt, ratioAtMost, type Target, textTable, type Unit } from './targets.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
/** Set by snapshotCli(): a private copy of the built CLI, so a concurrent `npm run build` (rm -rf dist) can't break a run. */
let BIN = path.join(REPO, 'bin/run.js')
const PRELOAD = path.join(REPO, 'bench/rss-preload.mjs')
const OUT_JSON = path.join(REPO, '.bench/last.json')

const REPS = Math.max(1, Number(process.env.BENCH_REPS ?? sized(3, 1)))
// Start-up is ~0.15 s against Node's ~0.11 s on a shared machine: a ratio near the 1.3 target needs many pairs to settle.
const STARTUP_RUNS = Math.max(1, Number(process.env.BENCH_STARTUP_RUNS ?? sized(30, 15)))
const BIG_REPS = Math.max(1, Number(process.env.BENCH_BIG_REPS ?? 1))
// The shared part starts radosgw + PostgreSQL and fills buckets: minutes even on small inputs, so the quick run leaves it out unless named.
const PARTS = new Set((process.env.BENCH_PARTS ?? `nix,daemon,startup,grown,space,big,gc,cache${QUICK ? '' : ',shared'}`).split(',').map((s) => s.trim()))
/** GNU time gives the peak RSS of any child; without it only ours is measured (via a preload). */
const GNU_TIME = spawnSync('/usr/bin/time', ['-f', '%M', 'true'], { stdio: 'ignore' }).status === 0 ? '/usr/bin/time' : undefined
/** GNU time's report: CPU (user, system seconds) and peak RSS (KiB) on its last line. */
const TIME_FORMAT = '%U %S %M'

const MiB = 1024 * 1024

const OUR_ENV: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' }
delete OUR_ENV.TVIX_STORE
delete OUR_ENV.NIX_STORE_DIR
const NIX_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  NIX_CONFIG: 'experimental-features = nix-command\nsandbox = false\nbuild-users-group =\nsubstituters =',
}

type Tool = 'ours' | 'nix'
const TOOLS: Tool[] = ['ours', 'nix']
/** Alternate which tool goes first, so neither always runs on the other's leftovers. */
const orderFor = (rep: number): Tool[] => (rep % 2 === 0 ? TOOLS : [...TOOLS].reverse())

// ---------------------------------------------------------------- inputs

interface InputStats {
  files: number
  executables: number
  symlinks: number
  directories: number
  bytes: number
}

function writeFile(p: string, data: Uint8Array | string, exec: boolean): void {
  fs.writeFileSync(p, data)
  if (exec) fs.chmodSync(p, 0o755)
}

/** Entries of many-small: 15,000 (the issue's "15k small files"; 1,000 quick). */
const MANY_SMALL = sized(15_000, 1_000)

/** ~`count` files of 0–8 KiB in `count`/100 nested directories, ~8% executable, ~2% symlinks, a few duplicates. */
export function makeManySmall(root: string, count = MANY_SMALL): void {
  const r = rng(0x5eed)
  fs.mkdirSync(root, { recursive: true })
  const dirs = [root]
  for (let i = 0; i < Math.ceil(count / 100) - 1; i++) {
    const d = path.join(dirs[Math.floor(r() * dirs.length)]!, `dir${i}`)
    fs.mkdirSync(d)
    dirs.push(d)
  }
  const files: string[] = []
  for (let i = 0; i < count; i++) {
    const dir = dirs[Math.floor(r() * dirs.length)]!
    const roll = r()
    if (roll < 0.02 && files.length > 0) {
      // symlinks: mostly relative to an existing file, some dangling/absolute
      const target = r() < 0.7 ? path.relative(dir, files[Math.floor(r() * files.length)]!) : `/nonexistent/target-${i}`
      fs.symlinkSync(target, path.join(dir, `link${i}`))
      continue
    }
    const p = path.join(dir, `file${i}${['', '.txt', '.c', '.h', '.json'][Math.floor(r() * 5)]}`)
    const exec = r() < 0.08
    if (roll < 0.05 && files.length > 0) {
      fs.copyFileSync(files[Math.floor(r() * files.length)]!, p) // same content as an earlier file
      fs.chmodSync(p, exec ? 0o755 : 0o644)
    } else {
      const s = r()
      const size = s < 0.1 ? 0 : s < 0.5 ? 1 + Math.floor(r() * 512) : s < 0.85 ? 512 + Math.floor(r() * 3584) : 4096 + Math.floor(r() * 4097)
      writeFile(p, randomBytes(size, 1_000_000 + i), exec)
    }
    files.push(p)
  }
}

/** Size of each large file of few-large: 64 MiB (4 MiB quick). */
const LARGE = sized(64, 4) * MiB

/** 4 files of 64 MiB (seeded random, incompressible) plus a couple of small files. */
export function makeFewLarge(root: string): void {
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true })
  for (let i = 0; i < 4; i++) writeFile(path.join(root, `blob${i}.bin`), randomBytes(LARGE, 4_000 + i), false)
  writeFile(path.join(root, 'README'), 'four large blobs\n', false)
  writeFile(path.join(root, 'bin/run.sh'), '#!/bin/sh\nexec cat "$@"\n', true)
}

/**
 * The mixed tree: a source tree's worth of small files (2,000; 300 quick),
 * 40 medium files of 64 KiB–2 MiB (10 quick) and two large ones of 32 MiB
 * (4 MiB quick), seeded.
 */
export function makeMixed(root: string): void {
  makeManySmall(path.join(root, 'src'), sized(2_000, 300))
  const r = rng(0x313d)
  fs.mkdirSync(path.join(root, 'share'), { recursive: true })
  for (let i = 0; i < sized(40, 10); i++) writeFile(path.join(root, 'share', `m${i}.dat`), randomBytes(64 * 1024 + Math.floor(r() * 2 * MiB), 7_000 + i), false)
  for (let i = 0; i < 2; i++) writeFile(path.join(root, `large${i}.bin`), randomBytes(sized(32, 4) * MiB, 8_000 + i), i === 1)
}

/** Reads every file once (untimed warm-up) and counts what is there. */
function warmAndCount(p: string, stats: InputStats = { files: 0, executables: 0, symlinks: 0, directories: 0, bytes: 0 }): InputStats {
  const st = fs.lstatSync(p)
  if (st.isSymbolicLink()) {
    fs.readlinkSync(p)
    stats.symlinks++
  } else if (st.isDirectory()) {
    stats.directories++
    for (const name of fs.readdirSync(p)) warmAndCount(path.join(p, name), stats)
  } else {
    const fd = fs.openSync(p, 'r')
    const buf = Buffer.allocUnsafe(Math.min(8 * MiB, Math.max(1, st.size)))
    while (fs.readSync(fd, buf, 0, buf.length, null) > 0);
    fs.closeSync(fd)
    stats.files++
    stats.bytes += st.size
    if (st.mode & 0o100) stats.executables++
  }
  return stats
}

// ---------------------------------------------------------------- running

interface Sample {
  ms: number
  rssKiB?: number
  /** User + system CPU of the process (with `rss`: measured by the same GNU time or preload). */
  cpuMs?: number
  stdout: string
  sha256?: string
}

interface ExecOpts {
  /** 'pipe' collects stdout (small outputs only), 'hash' streams it into SHA-256, a number is an fd to hand over. */
  stdout: 'pipe' | 'hash' | number
  /** Measure the process's peak RSS and CPU time. */
  rss?: boolean
  /** For tool 'nix': the Nix program to run (default nix-store; `nix` for `nix copy`). */
  program?: 'nix-store' | 'nix'
  /** For tool 'ours': run this argv instead of our CLI (the `node -e 0` baseline). */
  argv?: string[]
  /** Variables set over the tool's environment (e.g. a fresh XDG_CACHE_HOME for Nix). */
  env?: NodeJS.ProcessEnv
}

let rssCounter = 0
let tmpRoot = ''

function argvFor(tool: Tool, args: string[], rssFile: string | undefined, program: 'nix-store' | 'nix' = 'nix-store', raw?: string[]): { argv: string[]; env: NodeJS.ProcessEnv } {
  if (tool === 'nix') {
    const argv = [program, ...args]
    return { argv: rssFile && GNU_TIME ? [GNU_TIME, '-f', TIME_FORMAT, '-o', rssFile, ...argv] : argv, env: NIX_ENV }
  }
  const script = raw ?? [BIN, ...args]
  if (rssFile && !GNU_TIME) return { argv: [process.execPath, '--import', PRELOAD, ...script], env: { ...OUR_ENV, BENCH_RSS_FILE: rssFile } }
  const argv = [process.execPath, ...script]
  return { argv: rssFile ? [GNU_TIME!, '-f', TIME_FORMAT, '-o', rssFile, ...argv] : argv, env: OUR_ENV }
}

/** Runs one command; wall time is spawn → exit. Rejects on a non-zero exit with its stderr. */
function exec(tool: Tool, args: string[], opts: ExecOpts): Promise<Sample> {
  const rssFile = opts.rss ? path.join(tmpRoot, `rss-${rssCounter++}`) : undefined
  const { argv, env: toolEnv } = argvFor(tool, args, rssFile, opts.program, opts.argv)
  const env = { ...toolEnv, ...opts.env }
  return new Promise((resolve, reject) => {
    const stdoutSpec = typeof opts.stdout === 'number' ? opts.stdout : 'pipe'
    const t0 = performance.now()
    const child = spawn(argv[0]!, argv.slice(1), { env, cwd: REPO, stdio: ['ignore', stdoutSpec, 'pipe'] })
    let t1 = 0
    const out: Buffer[] = []
    const hash = opts.stdout === 'hash' ? createHash('sha256') : undefined
    const err: Buffer[] = []
    child.stdout?.on('data', (c: Buffer) => (hash ? hash.update(c) : out.push(c)))
    child.stderr!.on('data', (c: Buffer) => err.push(c))
    child.on('error', reject)
    child.on('exit', () => (t1 = performance.now()))
    child.on('close', (code, signal) => {
      const stderr = Buffer.concat(err).toString()
      if (code !== 0) {
        reject(new Error(`${tool}: \`${argv.join(' ')}\` failed (${signal ?? `exit ${code}`}):\n${stderr.slice(-2000)}`))
        return
      }
      let rssKiB: number | undefined
      let cpuMs: number | undefined
      if (rssFile) {
        // GNU time writes its report on the last line (after any "Command exited…" notes).
        const lines = fs.readFileSync(rssFile, 'utf8').trim().split('\n')
        const [user, sys, kib] = lines[lines.length - 1]!.trim().split(/\s+/).map(Number)
        rssKiB = kib
        cpuMs = (user! + sys!) * 1000
        fs.rmSync(rssFile, { force: true })
      }
      resolve({ ms: t1 - t0, rssKiB, cpuMs, stdout: Buffer.concat(out).toString(), sha256: hash?.digest('hex') })
    })
  })
}

const storeArgs = (tool: Tool, store: string): string[] => (tool === 'ours' ? ['--store', store] : ['--store', `local?root=${store}`])
const importArgs = (tool: Tool, store: string, tree: string): string[] =>
  tool === 'ours' ? ['import', ...storeArgs(tool, store), tree] : [...storeArgs(tool, store), '--add', tree]

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** Removes a tree even when Nix made it read-only (needed when not running as root). */
function rmTree(p: string): void {
  try {
    fs.rmSync(p, { recursive: true, force: true })
  } catch {
    spawnSync('chmod', ['-R', 'u+w', p], { stdio: 'ignore' })
    fs.rmSync(p, { recursive: true, force: true })
  }
}

/**
 * Copies bin/, dist/, package.json and the oclif manifest into `dest`
 * (node_modules symlinked) and points BIN there. Other work in this checkout
 * may rebuild dist/ at any moment; a half-built dist/ would fail the run.
 */
async function snapshotCli(dest: string): Promise<void> {
  // The fast-path bundles too (the hot commands' own and their caches): without them bin/run.js quietly runs everything through oclif, and start-up figures come out slow.
  const commands = ['import', 'export-nar', 'ls', 'cat', 'narinfo', 'copy', 'daemon', 'path-info']
  const bundles = ['fast-path.json', ...commands.flatMap((c) => [`fast-path.${c}.cjs`, `fast-path.${c}.cache`])]
  const needed = [...commands.map((c) => path.join(REPO, 'dist/commands', `${c}.js`)), path.join(REPO, 'dist/backends/open-store.js'), ...bundles.map((f) => path.join(REPO, 'dist', f))]
  for (let attempt = 0; ; attempt++) {
    if (needed.every((f) => fs.existsSync(f))) {
      try {
        fs.mkdirSync(dest, { recursive: true })
        for (const f of ['bin', 'dist', 'package.json', 'oclif.manifest.json']) fs.cpSync(path.join(REPO, f), path.join(dest, f), { recursive: true })
        if (needed.every((f) => fs.existsSync(path.join(dest, path.relative(REPO, f))))) break
      } catch {
        // dist/ changed under us; retry below
      }
    }
    if (attempt >= 30) throw new Error('dist/ is missing or incomplete: run `npm run build` (npm run bench does)')
    fs.rmSync(dest, { recursive: true, force: true })
    await new Promise((r) => setTimeout(r, 1000))
  }
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(dest, 'node_modules'))
  BIN = path.join(dest, 'bin/run.js')
}

/** CPU ticks used by the whole machine, and by this process plus its waited-for children. */
function cpuTicks(): { machine: number; ours: number; total: number } {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const [user, nice, system, idle, iowait, irq, softirq, steal] = cpu as [number, number, number, number, number, number, number, number]
  const self = fs.readFileSync('/proc/self/stat', 'utf8')
  const f = self.slice(self.lastIndexOf(')') + 2).split(' ').map(Number)
  return { machine: user + nice + system + irq + softirq + steal, ours: f[11]! + f[12]! + f[13]! + f[14]!, total: user + nice + system + idle + iowait + irq + softirq + steal }
}

/** Share of the machine's CPU that other processes used between two cpuTicks() readings (Linux only). */
function foreignLoad(a: ReturnType<typeof cpuTicks>, b: ReturnType<typeof cpuTicks>): number {
  return Math.max(0, b.machine - a.machine - (b.ours - a.ours)) / Math.max(1, b.total - a.total)
}

// ---------------------------------------------------------------- results

/**
 * 'nix': ours vs nix-store (`ours`, `nix`); the start-up rows have no Nix
 * figure. 'daemon': our CLI through a gRPC daemon vs on a local store; there
 * `ours` is the daemon figure and `nix` the local one. 'changed': the second
 * copy of a slightly changed tree, `nix` being what changed in the tree.
 * 'big': one 2 GiB file, ours vs Nix (nix-store --add / --dump, nix copy).
 * 'cache': Nix with our HTTP binary cache vs Nix with a file:// cache, and
 * our copy from a file:// cache vs Nix's (`ours` = the tvix-store side).
 * JSON keeps the names; the tables say what the columns are.
 */
type Section = 'nix' | 'startup' | 'grown' | 'daemon' | 'copy' | 'changed' | 'big' | 'cache'

interface Row {
  section: Section
  figure: string
  unit: Unit
  ours: number
  nix?: number
  ratio?: number
  /** The issue's target for this figure, and whether the medians meet it. */
  target?: string
  met?: boolean
  samples: { ours: number[]; nix?: number[] }
}

const rows: Row[] = []
const checks: { check: string; ok: boolean; detail: string }[] = []
/** Lines printed under a table. */
const notes: Record<'startup' | 'grown' | 'daemon' | 'copy' | 'changed' | 'big' | 'cache', string[]> = { startup: [], grown: [], daemon: [], copy: [], changed: [], big: [], cache: [] }

/**
 * One figure: the medians of both sides, and their ratio; with `paired`
 * (ours[i] and nix[i] ran next to each other) the median of the pairs'
 * ratios instead, which a machine whose speed drifts during the run moves
 * less than a ratio of medians.
 */
function addRow(figure: string, unit: Unit, ours: number[], nix?: number[], section: Section = 'nix', target?: Target, paired = false): void {
  const o = median(ours)
  const n = nix && nix.length > 0 ? median(nix) : undefined
  const pairs = paired && nix?.length === ours.length ? ours.map((x, i) => x / nix[i]!).filter((r) => Number.isFinite(r)) : []
  const ratio = pairs.length > 0 ? median(pairs) : n ? o / n : undefined
  const met = target ? target.ok({ ours: o, ref: n, ratio }) : undefined
  rows.push({ section, figure, unit, ours: o, nix: n, ratio, target: target?.text, met, samples: { ours, nix } })
}

function check(name: string, ok: boolean, detail: string): void {
  checks.push({ check: name, ok, detail })
  console.error(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : `: ${detail}`}`)
}

/** Two decimals; tiny ratios (bytes moved vs a whole tree) with two significant digits. */
const ratioText = (r: number | undefined): string => (r === undefined ? '–' : r === 0 || r >= 0.01 ? r.toFixed(2) : r.toPrecision(2))

const HEADS: Record<Section, string[]> = {
  nix: ['figure', 'tvix-store', 'nix-store', 'ratio'],
  startup: ['figure (cold start, whole process)', 'tvix-store', 'node -e 0', 'ratio'],
  grown: [`figure (a store after ${GROWN_IMPORTS} imports)`, 'that store', 'a store of 1-2 imports', 'ratio'],
  daemon: ['figure (tvix-store CLI)', 'through daemon', 'local store', 'ratio'],
  copy: ['figure (one file through a daemon)', 'copy', 'cat through the daemon', 'ratio'],
  changed: ['figure (second copy of a slightly changed tree)', 'tvix-store', 'changed in the tree', 'ratio'],
  big: [`figure (one ${sizeText(BIG_BYTES)} file)`, 'tvix-store', 'Nix', 'ratio'],
  cache: ['figure (tvix-store side | Nix side)', 'tvix-store side', 'Nix side', 'ratio'],
}

function table(section: Section): string {
  const body = rows
    .filter((r) => r.section === section)
    .map((r) => [r.figure, fmt(r.ours, r.unit), fmt(r.nix, r.unit), ratioText(r.ratio), r.target ?? '–', r.met === undefined ? '–' : r.met ? 'yes' : 'no'])
  return textTable([...HEADS[section], 'target', 'met?'], body)
}

/** A section's table: heading lines above; its notes and how long it took below; nothing when it has no rows. */
function printSection(section: keyof typeof notes, heading: string[], took?: string): void {
  if (!rows.some((r) => r.section === section)) return
  const marked = QUICK ? [`[quick] ${heading[0]}`, ...heading.slice(1)] : heading
  for (const line of [...marked, '', table(section), ...notes[section], ...(took ? [took] : []), '']) console.log(line)
}

// ---------------------------------------------------------------- the bench

/**
 * Issue 14's targets per input (ratios to nix-store in the same run): many
 * small files imported in ≤ 0.5× Nix's wall and ≤ 1.0× its CPU, exported in
 * ≤ 2.0×; the mixed tree imported in ≤ 1.0×. few-large keeps the earlier
 * issue's import ≤ 0.8× and export ≤ 1.0×.
 */
const INPUT_TARGETS: Record<string, { import?: Target; importCpu?: Target; export?: Target }> = {
  'many-small': { import: ratioAtMost(0.5), importCpu: ratioAtMost(1.0), export: ratioAtMost(2.0) },
  mixed: { import: ratioAtMost(1.0) },
  'few-large': { import: ratioAtMost(0.8), export: ratioAtMost(1.0) },
}

async function benchInput(name: string, tree: string, devNull: number): Promise<void> {
  const stores: Record<Tool, string[]> = { ours: [], nix: [] }
  const imp: Record<Tool, Sample[]> = { ours: [], nix: [] }
  console.error(`[${name}] import ×${REPS} per tool (fresh store each)`)
  for (let rep = 0; rep < REPS; rep++) {
    for (const tool of orderFor(rep)) {
      const store = path.join(tmpRoot, 'stores', `${tool}-${name}-${rep}`)
      fs.mkdirSync(store, { recursive: true })
      stores[tool].push(store)
      imp[tool].push(await exec(tool, importArgs(tool, store, tree), { stdout: 'pipe', rss: true }))
    }
  }
  const paths = (t: Tool) => imp[t].map((s) => s.stdout.trim())
  const storePath = paths('ours')[0]!
  check(`${name}: store paths printed by both imports are identical`, paths('ours').every((p) => p === paths('nix')[0]) && paths('nix').every((p) => p === storePath), `ours ${[...new Set(paths('ours'))].join(', ')} vs nix ${[...new Set(paths('nix'))].join(', ')}`)

  console.error(`[${name}] re-import ×${REPS} per tool (populated store)`)
  const reimp: Record<Tool, Sample[]> = { ours: [], nix: [] }
  for (let rep = 0; rep < REPS; rep++) {
    for (const tool of orderFor(rep)) reimp[tool].push(await exec(tool, importArgs(tool, stores[tool][rep]!, tree), { stdout: 'pipe', rss: true }))
  }
  // A re-import finds the tree unchanged since the import (import-cache.ts); with --rehash it reads and hashes every file, as Nix does.
  const rehash: Sample[] = []
  for (let rep = 0; rep < REPS; rep++) rehash.push(await exec('ours', [...importArgs('ours', stores.ours[rep]!, tree).slice(0, -1), '--rehash', tree], { stdout: 'pipe', rss: true }))
  check(`${name}: re-imports print the same store path`, [...reimp.ours, ...reimp.nix, ...rehash].every((s) => s.stdout.trim() === storePath), 'a re-import printed a different path')

  // Export: ours from its store, Nix dumps the same tree on disk.
  const exportArgs = (tool: Tool): string[] => (tool === 'ours' ? ['export-nar', ...storeArgs(tool, stores.ours[0]!), storePath] : ['--dump', tree])
  console.error(`[${name}] NAR identity check (untimed), then export ×${REPS} per tool`)
  const h = { ours: await exec('ours', exportArgs('ours'), { stdout: 'hash' }), nix: await exec('nix', exportArgs('nix'), { stdout: 'hash' }) }
  check(`${name}: export-nar and nix-store --dump NARs are byte-identical`, h.ours.sha256 === h.nix.sha256, `sha256 ours ${h.ours.sha256} vs nix ${h.nix.sha256}`)
  const exp: Record<Tool, Sample[]> = { ours: [], nix: [] }
  for (let rep = 0; rep < REPS; rep++) {
    for (const tool of orderFor(rep)) exp[tool].push(await exec(tool, exportArgs(tool), { stdout: devNull, rss: true }))
  }

  const ms = (t: Tool, s: Record<Tool, Sample[]>) => s[t].map((x) => x.ms)
  const cpu = (t: Tool, s: Record<Tool, Sample[]>) => s[t].flatMap((x) => (x.cpuMs === undefined ? [] : [x.cpuMs]))
  const rss = (t: Tool, s: Record<Tool, Sample[]>) => s[t].flatMap((x) => (x.rssKiB === undefined ? [] : [x.rssKiB / 1024]))
  const target = INPUT_TARGETS[name] ?? {}
  addRow(`import ${name}`, 's', ms('ours', imp), ms('nix', imp), 'nix', target.import)
  addRow(`import ${name}, CPU (user+sys)`, 's', cpu('ours', imp), cpu('nix', imp), 'nix', target.importCpu)
  addRow(`re-import ${name}`, 's', ms('ours', reimp), ms('nix', reimp), 'nix', ratioAtMost(0.5))
  addRow(`re-import ${name}, every file read (--rehash)`, 's', rehash.map((x) => x.ms), ms('nix', reimp), 'nix')
  addRow(`export-nar ${name} (to /dev/null)`, 's', ms('ours', exp), ms('nix', exp), 'nix', target.export)
  addRow(`export-nar ${name}, CPU (user+sys)`, 's', cpu('ours', exp), cpu('nix', exp), 'nix')
  addRow(`peak RSS import ${name}`, 'MiB', rss('ours', imp), rss('nix', imp))
  addRow(`peak RSS export-nar ${name}`, 'MiB', rss('ours', exp), rss('nix', exp))

  if (!process.env.BENCH_KEEP) for (const tool of TOOLS) for (const s of stores[tool]) rmTree(s)
}

/**
 * Cold start: ls, cat, narinfo and path-info of a small path, each run
 * right next to a bare `node -e 0` of its own (wall and CPU through the same
 * GNU time, so both carry its cost), which of the two goes first
 * alternating by round; the ratio is the median of the pairs' ratios.
 * Target ≤ 1.3× node.
 */
async function benchStartup(): Promise<void> {
  console.error(`[start-up] ${STARTUP_RUNS} rounds of ls, cat, narinfo, path-info and a bare node -e 0`)
  const store = path.join(tmpRoot, 'stores', 'ours-startup')
  const small = path.join(tmpRoot, 'inputs', 'small')
  TREES.mixed!(small)
  const p = (await exec('ours', ['import', '--store', store, small], { stdout: 'pipe' })).stdout.trim()
  const commands: Record<string, string[]> = {
    ls: ['ls', '--store', store, p],
    cat: ['cat', '--store', store, `${p}/sub/a.txt`],
    narinfo: ['narinfo', '--store', store, p],
    'path-info': ['path-info', '--store', store, p],
  }
  const out: Record<string, string> = {}
  for (const [name, args] of Object.entries(commands)) out[name] = (await exec('ours', args, { stdout: 'pipe' })).stdout
  check(
    'start-up: ls, cat, narinfo and path-info of the small path work',
    out.ls!.includes('run.sh') && out.cat === 'abc' && out.narinfo!.includes(`StorePath: ${p}\n`) && out.narinfo!.includes('NarHash: sha256:') && out['path-info'] === `${p}\n`,
    JSON.stringify(out),
  )
  const runs = Object.fromEntries(Object.keys(commands).map((c) => [c, { ours: [] as Sample[], node: [] as Sample[] }]))
  const node = () => exec('ours', [], { stdout: 'pipe', rss: true, argv: ['-e', '0'] })
  for (let i = 0; i < STARTUP_RUNS; i++) {
    for (const [name, args] of Object.entries(commands)) {
      const ours = () => exec('ours', args, { stdout: 'pipe', rss: true })
      if (i % 2 === 0) {
        runs[name]!.node.push(await node())
        runs[name]!.ours.push(await ours())
      } else {
        runs[name]!.ours.push(await ours())
        runs[name]!.node.push(await node())
      }
    }
  }
  const ms = (xs: Sample[]) => xs.map((x) => x.ms)
  const cpu = (xs: Sample[]) => xs.flatMap((x) => (x.cpuMs === undefined ? [] : [x.cpuMs]))
  for (const [name, r] of Object.entries(runs)) {
    addRow(`cold start: ${name} of a small path`, 'ms', ms(r.ours), ms(r.node), 'startup', ratioAtMost(1.3), true)
    addRow(`cold start: ${name}, CPU (user+sys)`, 'ms', cpu(r.ours), cpu(r.node), 'startup', undefined, true)
  }
}

async function main(): Promise<void> {
  const started = performance.now()
  const nixVersion = spawnSync('nix-store', ['--version'], { encoding: 'utf8', env: NIX_ENV })
  if (nixVersion.status !== 0) throw new Error('nix-store not found on PATH: the bench compares against real Nix')
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bench-'))
  // Import fingerprints (import-cache.ts) start empty and go with the bench's folder.
  OUR_ENV.XDG_CACHE_HOME = path.join(tmpRoot, 'xdg-cache')
  const cleanup = () => {
    if (process.env.BENCH_KEEP) console.error(`kept ${tmpRoot}`)
    else rmTree(tmpRoot)
  }
  process.once('SIGINT', () => {
    cleanup()
    process.exit(130)
  })
  const devNull = fs.openSync('/dev/null', 'w')
  let ticks0: ReturnType<typeof cpuTicks> | undefined
  try {
    ticks0 = cpuTicks()
  } catch {
    // not Linux: no contention figure
  }
  try {
    await snapshotCli(path.join(tmpRoot, 'cli'))
    // What the snapshot was built from (best effort: dist/ is whatever the last build left).
    const git = (args: string[]) => spawnSync('git', args, { cwd: REPO, encoding: 'utf8' }).stdout?.trim() ?? ''
    const commit = `${git(['rev-parse', '--short', 'HEAD'])}${git(['status', '--porcelain', '--', 'src']) ? ' + uncommitted src changes' : ''}`
    console.error(`generating inputs in ${tmpRoot}`)
    // The shared inputs serve the nix and daemon parts only.
    const inputs: { name: string; make: (d: string) => void }[] = [
      ...(PARTS.has('nix') || PARTS.has('daemon') || PARTS.has('shared')
        ? [
            { name: 'many-small', make: (d: string) => makeManySmall(d) },
            { name: 'few-large', make: makeFewLarge },
          ]
        : []),
      ...(PARTS.has('nix') ? [{ name: 'mixed', make: makeMixed }] : []),
    ]
    const stats: Record<string, InputStats> = {}
    const trees: Record<string, string> = {}
    for (const { name, make } of inputs) {
      trees[name] = path.join(tmpRoot, 'inputs', name)
      fs.mkdirSync(path.dirname(trees[name]!), { recursive: true })
      make(trees[name]!)
    }
    spawnSync('sync') // flush the freshly written inputs, so their writeback doesn't land in a timed run
    for (const { name } of inputs) {
      stats[name] = warmAndCount(trees[name]!)
      const s = stats[name]!
      console.error(`  ${name}: ${s.files} files (${s.executables} executable), ${s.symlinks} symlinks, ${s.directories} directories, ${(s.bytes / MiB).toFixed(1)} MiB`)
    }
    const genSeconds = (performance.now() - started) / 1000

    if (PARTS.has('nix')) for (const { name } of inputs) await benchInput(name, trees[name]!, devNull)
    let daemonSeconds = 0
    if (PARTS.has('daemon')) {
      const t0 = performance.now()
      await benchDaemon({
        bin: BIN,
        repo: REPO,
        tmpRoot,
        reps: REPS,
        env: OUR_ENV,
        devNull,
        trees,
        stats,
        run: (args, stdout) => exec('ours', args, { stdout }),
        addRow: (figure, unit, daemon, local, target, section = 'daemon') => addRow(figure, unit, daemon, local, section, target),
        check,
        note: (line, section = 'daemon') => notes[section].push(line),
        rmTree,
      })
      daemonSeconds = (performance.now() - t0) / 1000
    }
    if (PARTS.has('startup')) await benchStartup()
    let grownSeconds = 0
    if (PARTS.has('grown')) {
      grownSeconds = await benchGrown({
        tmpRoot,
        run: (args) => exec('ours', args, { stdout: 'pipe', rss: true }),
        addRow: (figure, unit, grown, small, target) => addRow(figure, unit, grown, small, 'grown', target, true),
        check,
        rmTree,
      })
    }
    let bigSeconds = 0
    if (PARTS.has('big')) {
      bigSeconds = await benchBig({
        tmpRoot,
        reps: BIG_REPS,
        devNull,
        run: (tool, args, opts) => exec(tool, args, opts),
        addRow: (figure, unit, ours, nix, target) => addRow(figure, unit, ours, nix, 'big', target),
        check,
        note: (line) => notes.big.push(line),
        rmTree,
      })
    }
    let cacheSeconds = 0
    if (PARTS.has('cache')) {
      cacheSeconds = await benchCache({
        bin: BIN,
        repo: REPO,
        tmpRoot,
        reps: REPS,
        env: OUR_ENV,
        nixEnv: NIX_ENV,
        run: (tool, args, opts) => exec(tool, args, opts),
        addRow: (figure, unit, ours, nix, target) => addRow(figure, unit, ours, nix, 'cache', target),
        check,
        note: (line) => notes.cache.push(line),
        rmTree,
      })
    }
    let space: SpaceResult | undefined
    if (PARTS.has('space')) {
      space = await benchSpace({
        tmpRoot,
        reps: REPS,
        run: (tool, args, stdout) => exec(tool, args, { stdout }),
        check,
        rmTree,
      })
    }

    let gcRows: GcRow[] | undefined
    let gcSeconds = 0
    if (PARTS.has('gc')) {
      const t0 = performance.now()
      const work = path.join(tmpRoot, 'gc')
      fs.mkdirSync(work)
      gcRows = await benchGc(work, BIN, NIX_ENV)
      rmTree(work)
      gcSeconds = (performance.now() - t0) / 1000
    }

    const shared: SharedResult | undefined = PARTS.has('shared') ? await benchShared({ bin: BIN, repo: REPO, tmpRoot, reps: REPS, env: OUR_ENV, trees, stats, makeManySmall, run: (args, stdout, env) => exec('ours', args, { stdout, rss: true, env }), check, rmTree }) : undefined

    const totalSeconds = (performance.now() - started) / 1000
    const ticks1 = ticks0 ? cpuTicks() : undefined
    const foreign = ticks0 && ticks1 ? foreignLoad(ticks0, ticks1) : undefined
    // CPU of the bench and every process it waited for (ours, Nix, daemons): on an idle 2-core machine the run takes at least half of it.
    const benchCpuSeconds = ticks0 && ticks1 ? (ticks1.ours - ticks0.ours) / 100 : undefined
    if (QUICK) console.log('QUICK MODE (BENCH_QUICK=1): smaller inputs, fewer runs; every table is marked [quick]. Quote the full run, not this one.')
    console.log(`${QUICK ? '[quick] ' : ''}tvix-store vs ${nixVersion.stdout.trim()} — median of ${REPS} runs (start-up: ${STARTUP_RUNS}); ratio = ours/nix, < 1 means we are faster; targets from the issue (MB = 10^6 bytes)`)
    if (inputs.length > 0) console.log(`inputs: ${inputs.map(({ name }) => { const s = stats[name]!; return `${name} = ${s.files} files, ${s.symlinks} symlinks, ${s.directories} dirs, ${(s.bytes / MiB).toFixed(1)} MiB` }).join('; ')}`)
    console.log(`CLI built from ${commit || 'unknown commit'} (the dist/ snapshot taken at the start)`)
    console.log(`peak RSS via ${GNU_TIME ? 'GNU time (%M)' : 'a preload reading process.resourceUsage().maxRSS (ours only)'}`)
    if (rows.some((r) => r.section === 'nix')) {
      console.log()
      console.log(table('nix'))
    }
    console.log()
    printSection('startup', [
      `cold start — median of ${STARTUP_RUNS} rounds, each round every command next to a \`node -e 0\` of its own (which goes first alternating); ratio = median of the pairs' ours/node; wall and CPU both through GNU time (or the preload)`,
    ])
    printSection(
      'grown',
      [
        `a store grown by ${GROWN_IMPORTS} imports (each 20 small files and one of 1.1 MiB: a bundle and a pack) against a store of one or two imports — ${QUICK ? 5 : 15} rounds, the two sides next to each other (which goes first alternating); ratio = median of the pairs' CPU ratios`,
      ],
      `grown section took ${grownSeconds.toFixed(1)} s`,
    )
    printSection(
      'daemon',
      [
        `through a gRPC daemon on loopback (grpc+http://127.0.0.1, fresh store + daemon per run) vs a local store — median of ${REPS} runs (32 readers: once)`,
        'ratio = daemon/local: for s and MiB > 1 means the daemon costs more, for MB/s < 1 means it is slower; daemon peak RSS = VmHWM from /proc',
      ],
      `daemon section took ${daemonSeconds.toFixed(1)} s`,
    )
    printSection('copy', [
      `one seeded file of ${sizeText(COPY_BYTES)} through a daemon on loopback (its store already holds the path) — median of ${REPS} runs, each copy into a fresh store (and a fresh daemon for local → daemon)`,
      'copy = MB/s of contents of the copy process; reference = MB/s of `cat` of the same file through the daemon to /dev/null; ratio = copy/cat (> 1: the copy is faster)',
    ])
    printSection('changed', [
      'second copy of a slightly changed tree (once): the tree is copied from a local store to a fresh local store and to a fresh daemon, then a changed copy of it',
      'figures of the second copy, from `copy --json` and the target store\'s object files, against what changed between the two trees (contents, directories, bytes of changed contents)',
    ])
    printSection(
      'big',
      [`one ${sizeText(BIG_BYTES)} file — median of ${BIG_REPS} run(s) per tool; Nix = nix-store --add / nix-store --dump / nix copy of the same file; ratio = ours/Nix (for MB/s, > 1 means we are faster); peak RSS of the whole process`],
      `${sizeText(BIG_BYTES)} section took ${bigSeconds.toFixed(1)} s`,
    )
    printSection(
      'cache',
      [
        `Nix 2.8 and binary caches — median of ${REPS} runs per side (one untimed checked run first); every copy into a fresh target, every Nix run with a fresh narinfo cache`,
        'tvix-store side = Nix with our daemon --http-listen (uncompressed), or our copy; Nix side = Nix with a file:// cache it wrote with compression=none; ratio = tvix-store side / Nix side',
      ],
      `cache section took ${cacheSeconds.toFixed(1)} s`,
    )
    if (space) {
      console.log(`${QUICK ? '[quick] ' : ''}disk space: two releases of a generated tree with small differences, imported one after the other into one store (${nixVersion.stdout.trim()} for reference)`)
      console.log(`on disk = sum of regular file sizes (our store dir / DIR/nix/store), or \`du -sk\`; ratio = tvix-store / reference; targets from the issue; times: median of ${REPS} fresh stores per tool`)
      console.log()
      console.log(spaceTable(space.rows))
      for (const n of space.notes) console.log(n)
      console.log(`space section took ${space.seconds.toFixed(1)} s`)
      console.log()
    }
    if (gcRows) {
      console.log(`${QUICK ? '[quick] ' : ''}gc and verify on a store of ~${Math.round((2 * GC_TREE_FILES) / 1000)}k objects (two trees of ${GC_TREE_FILES.toLocaleString('en')} small files each; one run each); nix-store --delete of the same tree in a private Nix store for reference`)
      console.log()
      console.log(gcTable(gcRows))
      console.log(`gc section took ${gcSeconds.toFixed(1)} s`)
      console.log()
    }
    if (shared) printShared(shared)
    const failed = checks.filter((c) => !c.ok)
    for (const c of checks) console.log(`${c.ok ? 'ok  ' : 'FAIL'} ${c.check}${c.ok ? '' : ` — ${c.detail}`}`)
    if (foreign !== undefined) {
      const warn = foreign > 0.05 ? ' — WARNING: the machine was not idle, timings are noisy' : ''
      console.log(`other processes used ${(foreign * 100).toFixed(1)}% of all CPU time during the bench${warn}`)
    }
    console.log(`${QUICK ? '[quick] ' : ''}total bench time ${totalSeconds.toFixed(1)} s (input generation ${genSeconds.toFixed(1)} s) on ${os.cpus().length} CPUs${benchCpuSeconds === undefined ? '' : `; CPU used by the bench and its processes ${benchCpuSeconds.toFixed(1)} s`}`)

    fs.mkdirSync(path.dirname(OUT_JSON), { recursive: true })
    fs.writeFileSync(
      OUT_JSON,
      JSON.stringify(
        {
          date: new Date().toISOString(),
          commit,
          node: process.version,
          nix: nixVersion.stdout.trim(),
          cpus: os.cpus().length,
          cpuModel: os.cpus()[0]?.model,
          quick: QUICK,
          reps: REPS,
          startupRuns: STARTUP_RUNS,
          bigReps: BIG_REPS,
          rssSource: GNU_TIME ? 'gnu-time' : 'preload',
          parts: [...PARTS],
          notes,
          daemonSeconds,
          bigSeconds,
          cacheSeconds,
          gc: gcRows ?? null,
          space: space ?? null,
          shared: shared ?? null,
          inputs: stats,
          rows,
          checks,
          foreignCpuShare: foreign,
          benchCpuSeconds,
          generationSeconds: genSeconds,
          totalSeconds,
        },
        null,
        2,
      ) + '\n',
    )
    console.log(`wrote ${path.relative(REPO, OUT_JSON)}`)
    if (failed.length > 0) process.exitCode = 1
  } finally {
    fs.closeSync(devNull)
    cleanup()
  }
}

// Run only as a script, so the generators can be imported for profiling.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) await main()
