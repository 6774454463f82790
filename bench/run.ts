/**
 * `npm run bench`: times our CLI (node bin/run.js) against real Nix
 * (nix-store) on the same seeded inputs, in the same run, and prints
 * ours/nix ratios (< 1 means we are faster), with the cold start of ls, cat
 * and narinfo. A second table times the same CLI through a gRPC daemon on
 * loopback against a local store (bench/daemon.ts: blob throughput, import,
 * copy, daemon RSS under 32 readers), with daemon/local ratios; a third
 * (also bench/daemon.ts) shows that a second copy of a slightly changed tree
 * moves only what changed. A fourth (bench/big.ts) measures time and peak
 * RSS of import, export-nar and copy of one seeded 2 GiB file against Nix.
 * The last (bench/space.ts) measures disk space: two releases of a
 * generated tree with small differences, imported into one store, ours vs
 * nix-store. bench/gc.ts times gc and verify on a store of ~100k objects.
 * bench/cache.ts sets real Nix against our daemon's HTTP binary cache and
 * our copy --from nix+file:// against Nix on the same file:// cache.
 * Every table has the issue's target for each figure that has one, and
 * whether it is met. Results also go to .bench/last.json.
 *
 * Knobs (environment): BENCH_REPS (default 3), BENCH_STARTUP_RUNS (default 10),
 * BENCH_BIG_REPS (runs per tool in the 2 GiB part, default 1), BENCH_PARTS
 * (comma-separated subset of nix,daemon,startup,space,big,gc,cache; default all),
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
import { benchBig } from './big.js'
import { benchCache } from './cache.js'
import { benchGc, gcTable, type GcRow } from './gc.js'
import { benchDaemon } from './daemon.js'
import { benchSpace, type SpaceResult, spaceTable } from './space.js'
import { fmt, msAtMost, ratioAtMost, type Target, textTable, type Unit } from './targets.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
/** Set by snapshotCli(): a private copy of the built CLI, so a concurrent `npm run build` (rm -rf dist) can't break a run. */
let BIN = path.join(REPO, 'bin/run.js')
const PRELOAD = path.join(REPO, 'bench/rss-preload.mjs')
const OUT_JSON = path.join(REPO, '.bench/last.json')

const REPS = Math.max(1, Number(process.env.BENCH_REPS ?? 3))
const STARTUP_RUNS = Math.max(1, Number(process.env.BENCH_STARTUP_RUNS ?? 10))
const BIG_REPS = Math.max(1, Number(process.env.BENCH_BIG_REPS ?? 1))
const PARTS = new Set((process.env.BENCH_PARTS ?? 'nix,daemon,startup,space,big,gc,cache').split(',').map((s) => s.trim()))
/** GNU time gives the peak RSS of any child; without it only ours is measured (via a preload). */
const GNU_TIME = spawnSync('/usr/bin/time', ['-f', '%M', 'true'], { stdio: 'ignore' }).status === 0 ? '/usr/bin/time' : undefined

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

/** ~20,000 files of 0–8 KiB in 200 nested directories, ~8% executable, ~2% symlinks, a few duplicates. */
export function makeManySmall(root: string): void {
  const r = rng(0x5eed)
  fs.mkdirSync(root)
  const dirs = [root]
  for (let i = 0; i < 199; i++) {
    const d = path.join(dirs[Math.floor(r() * dirs.length)]!, `dir${i}`)
    fs.mkdirSync(d)
    dirs.push(d)
  }
  const files: string[] = []
  for (let i = 0; i < 20_000; i++) {
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

/** 4 files of 64 MiB (seeded random, incompressible) plus a couple of small files. */
export function makeFewLarge(root: string): void {
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true })
  for (let i = 0; i < 4; i++) writeFile(path.join(root, `blob${i}.bin`), randomBytes(64 * MiB, 4_000 + i), false)
  writeFile(path.join(root, 'README'), 'four large blobs\n', false)
  writeFile(path.join(root, 'bin/run.sh'), '#!/bin/sh\nexec cat "$@"\n', true)
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
  stdout: string
  sha256?: string
}

interface ExecOpts {
  /** 'pipe' collects stdout (small outputs only), 'hash' streams it into SHA-256, a number is an fd to hand over. */
  stdout: 'pipe' | 'hash' | number
  rss?: boolean
  /** For tool 'nix': the Nix program to run (default nix-store; `nix` for `nix copy`). */
  program?: 'nix-store' | 'nix'
  /** Variables set over the tool's environment (e.g. a fresh XDG_CACHE_HOME for Nix). */
  env?: NodeJS.ProcessEnv
}

let rssCounter = 0
let tmpRoot = ''

function argvFor(tool: Tool, args: string[], rssFile: string | undefined, program: 'nix-store' | 'nix' = 'nix-store'): { argv: string[]; env: NodeJS.ProcessEnv } {
  if (tool === 'nix') {
    const argv = [program, ...args]
    return { argv: rssFile && GNU_TIME ? [GNU_TIME, '-f', '%M', '-o', rssFile, ...argv] : argv, env: NIX_ENV }
  }
  if (rssFile && !GNU_TIME) return { argv: [process.execPath, '--import', PRELOAD, BIN, ...args], env: { ...OUR_ENV, BENCH_RSS_FILE: rssFile } }
  const argv = [process.execPath, BIN, ...args]
  return { argv: rssFile ? [GNU_TIME!, '-f', '%M', '-o', rssFile, ...argv] : argv, env: OUR_ENV }
}

/** Runs one command; wall time is spawn → exit. Rejects on a non-zero exit with its stderr. */
function exec(tool: Tool, args: string[], opts: ExecOpts): Promise<Sample> {
  const rssFile = opts.rss ? path.join(tmpRoot, `rss-${rssCounter++}`) : undefined
  const { argv, env: toolEnv } = argvFor(tool, args, rssFile, opts.program)
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
      if (rssFile) {
        // GNU time writes the value on the last line (after any "Command exited…" notes).
        const lines = fs.readFileSync(rssFile, 'utf8').trim().split('\n')
        rssKiB = Number(lines[lines.length - 1])
        fs.rmSync(rssFile, { force: true })
      }
      resolve({ ms: t1 - t0, rssKiB, stdout: Buffer.concat(out).toString(), sha256: hash?.digest('hex') })
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
  const needed = [...['import', 'export-nar', 'ls', 'cat', 'narinfo', 'copy', 'daemon', 'path-info'].map((c) => path.join(REPO, 'dist/commands', `${c}.js`)), path.join(REPO, 'dist/backends/open-store.js')]
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
type Section = 'nix' | 'daemon' | 'changed' | 'big' | 'cache'

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
const notes: Record<'daemon' | 'changed' | 'big' | 'cache', string[]> = { daemon: [], changed: [], big: [], cache: [] }

function addRow(figure: string, unit: Unit, ours: number[], nix?: number[], section: Section = 'nix', target?: Target): void {
  const o = median(ours)
  const n = nix && nix.length > 0 ? median(nix) : undefined
  const ratio = n ? o / n : undefined
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
  daemon: ['figure (tvix-store CLI)', 'through daemon', 'local store', 'ratio'],
  changed: ['figure (second copy of a slightly changed tree)', 'tvix-store', 'changed in the tree', 'ratio'],
  big: ['figure (one 2 GiB file)', 'tvix-store', 'Nix', 'ratio'],
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
  for (const line of [...heading, '', table(section), ...notes[section], ...(took ? [took] : []), '']) console.log(line)
}

// ---------------------------------------------------------------- the bench

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
  check(`${name}: re-imports print the same store path`, [...reimp.ours, ...reimp.nix].every((s) => s.stdout.trim() === storePath), 'a re-import printed a different path')

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
  const rss = (t: Tool, s: Record<Tool, Sample[]>) => s[t].flatMap((x) => (x.rssKiB === undefined ? [] : [x.rssKiB / 1024]))
  addRow(`import ${name}`, 's', ms('ours', imp), ms('nix', imp), 'nix', ratioAtMost(0.8))
  addRow(`re-import ${name}`, 's', ms('ours', reimp), ms('nix', reimp), 'nix', ratioAtMost(0.5))
  addRow(`export-nar ${name} (to /dev/null)`, 's', ms('ours', exp), ms('nix', exp), 'nix', ratioAtMost(1.0))
  addRow(`peak RSS import ${name}`, 'MiB', rss('ours', imp), rss('nix', imp))
  addRow(`peak RSS export-nar ${name}`, 'MiB', rss('ours', exp), rss('nix', exp))

  if (!process.env.BENCH_KEEP) for (const tool of TOOLS) for (const s of stores[tool]) rmTree(s)
}

async function benchStartup(devNull: number): Promise<void> {
  console.error(`[start-up] ${STARTUP_RUNS} runs each of ls, cat, narinfo and a bare node`)
  const store = path.join(tmpRoot, 'stores', 'ours-startup')
  const small = path.join(tmpRoot, 'inputs', 'small')
  TREES.mixed!(small)
  const p = (await exec('ours', ['import', '--store', store, small], { stdout: 'pipe' })).stdout.trim()
  const ls = (await exec('ours', ['ls', '--store', store, p], { stdout: 'pipe' })).stdout
  const cat = (await exec('ours', ['cat', '--store', store, `${p}/sub/a.txt`], { stdout: 'pipe' })).stdout
  const narinfo = (await exec('ours', ['narinfo', '--store', store, p], { stdout: 'pipe' })).stdout
  check(
    'start-up: ls, cat and narinfo of the small path work',
    ls.includes('run.sh') && cat === 'abc' && narinfo.includes(`StorePath: ${p}\n`) && narinfo.includes('NarHash: sha256:'),
    `ls ${JSON.stringify(ls)}, cat ${JSON.stringify(cat)}, narinfo ${JSON.stringify(narinfo)}`,
  )
  const t = { ls: [] as number[], cat: [] as number[], narinfo: [] as number[], node: [] as number[] }
  for (let i = 0; i < STARTUP_RUNS; i++) {
    t.ls.push((await exec('ours', ['ls', '--store', store, p], { stdout: devNull })).ms)
    t.cat.push((await exec('ours', ['cat', '--store', store, `${p}/sub/a.txt`], { stdout: devNull })).ms)
    t.narinfo.push((await exec('ours', ['narinfo', '--store', store, p], { stdout: devNull })).ms)
    const t0 = performance.now()
    spawnSync(process.execPath, ['-e', '0'], { stdio: 'ignore' })
    t.node.push(performance.now() - t0)
  }
  addRow('start-up: ls of a small path', 'ms', t.ls, undefined, 'nix', msAtMost(150))
  addRow('start-up: cat of a small file', 'ms', t.cat, undefined, 'nix', msAtMost(150))
  addRow('start-up: narinfo of a small path', 'ms', t.narinfo, undefined, 'nix', msAtMost(150))
  addRow('(baseline: node -e 0)', 'ms', t.node)
}

async function main(): Promise<void> {
  const started = performance.now()
  const nixVersion = spawnSync('nix-store', ['--version'], { encoding: 'utf8', env: NIX_ENV })
  if (nixVersion.status !== 0) throw new Error('nix-store not found on PATH: the bench compares against real Nix')
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bench-'))
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
    const inputs: { name: string; make: (d: string) => void }[] =
      PARTS.has('nix') || PARTS.has('daemon')
        ? [
            { name: 'many-small', make: makeManySmall },
            { name: 'few-large', make: makeFewLarge },
          ]
        : []
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
    if (PARTS.has('startup')) await benchStartup(devNull)
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

    const totalSeconds = (performance.now() - started) / 1000
    const foreign = ticks0 ? foreignLoad(ticks0, cpuTicks()) : undefined
    console.log(`tvix-store vs ${nixVersion.stdout.trim()} — median of ${REPS} runs (start-up: ${STARTUP_RUNS}); ratio = ours/nix, < 1 means we are faster; targets from the issue (MB = 10^6 bytes)`)
    if (inputs.length > 0) console.log(`inputs: ${inputs.map(({ name }) => { const s = stats[name]!; return `${name} = ${s.files} files, ${s.symlinks} symlinks, ${s.directories} dirs, ${(s.bytes / MiB).toFixed(1)} MiB` }).join('; ')}`)
    console.log(`CLI built from ${commit || 'unknown commit'} (the dist/ snapshot taken at the start)`)
    console.log(`peak RSS via ${GNU_TIME ? 'GNU time (%M)' : 'a preload reading process.resourceUsage().maxRSS (ours only)'}`)
    if (rows.some((r) => r.section === 'nix')) {
      console.log()
      console.log(table('nix'))
    }
    console.log()
    printSection(
      'daemon',
      [
        `through a gRPC daemon on loopback (grpc+http://127.0.0.1, fresh store + daemon per run) vs a local store — median of ${REPS} runs (32 readers: once)`,
        'ratio = daemon/local: for s and MiB > 1 means the daemon costs more, for MB/s < 1 means it is slower; daemon peak RSS = VmHWM from /proc',
      ],
      `daemon section took ${daemonSeconds.toFixed(1)} s`,
    )
    printSection('changed', [
      'second copy of a slightly changed tree (once): the tree is copied from a local store to a fresh local store and to a fresh daemon, then a changed copy of it',
      'figures of the second copy, from `copy --json` and the target store\'s object files, against what changed between the two trees (contents, directories, bytes of changed contents)',
    ])
    printSection(
      'big',
      [`one 2 GiB file — median of ${BIG_REPS} run(s) per tool; Nix = nix-store --add / nix-store --dump / nix copy of the same file; ratio = ours/Nix (for MB/s, > 1 means we are faster); peak RSS of the whole process`],
      `2 GiB section took ${bigSeconds.toFixed(1)} s`,
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
      console.log(`disk space: two releases of a generated tree with small differences, imported one after the other into one store (${nixVersion.stdout.trim()} for reference)`)
      console.log(`on disk = sum of regular file sizes (our store dir / DIR/nix/store), or \`du -sk\`; ratio = tvix-store / reference; targets from the issue; times: median of ${REPS} fresh stores per tool`)
      console.log()
      console.log(spaceTable(space.rows))
      for (const n of space.notes) console.log(n)
      console.log(`space section took ${space.seconds.toFixed(1)} s`)
      console.log()
    }
    if (gcRows) {
      console.log('gc and verify on a store of ~100k objects (two trees of 50,000 small files each; one run each); nix-store --delete of the same tree in a private Nix store for reference')
      console.log()
      console.log(gcTable(gcRows))
      console.log(`gc section took ${gcSeconds.toFixed(1)} s`)
      console.log()
    }
    const failed = checks.filter((c) => !c.ok)
    for (const c of checks) console.log(`${c.ok ? 'ok  ' : 'FAIL'} ${c.check}${c.ok ? '' : ` — ${c.detail}`}`)
    if (foreign !== undefined) {
      const warn = foreign > 0.05 ? ' — WARNING: the machine was not idle, timings are noisy' : ''
      console.log(`other processes used ${(foreign * 100).toFixed(1)}% of all CPU time during the bench${warn}`)
    }
    console.log(`total bench time ${totalSeconds.toFixed(1)} s (input generation ${genSeconds.toFixed(1)} s) on ${os.cpus().length} CPUs`)

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
          inputs: stats,
          rows,
          checks,
          foreignCpuShare: foreign,
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
