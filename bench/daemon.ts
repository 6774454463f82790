/**
 * The daemon part of `npm run bench`: our CLI through a gRPC daemon on
 * loopback (grpc+http://127.0.0.1:PORT) against the same CLI on a local
 * store. Every timed daemon run gets a fresh store directory and a freshly
 * started daemon (started before the clock starts, stopped with SIGTERM
 * after it stops; exit code 0 is checked), so no run sees another's data
 * or a warm daemon heap. Daemon and CLI are the same dist/ snapshot.
 *
 * Rows (ratio = daemon/local):
 *  - gRPC blob put / read of a 256 MiB seeded random blob, MB/s, timed
 *    in-process by bench/grpc-blob.ts with the project's own client; the
 *    local column is the same script against a local store. Put includes
 *    the store's fsync; read follows the put (page cache warm).
 *  - import of few-large and many-small: wall time of the import process.
 *  - daemon peak RSS during those imports (VmHWM of the fresh daemon).
 *  - copy of few-large: local → local vs local → daemon, MB/s of file
 *    contents over the copy process's wall time.
 *  - 32 concurrent export-nar readers of few-large through one daemon
 *    (run once): the daemon's peak RSS (VmHWM; VmRSS sampled every 100 ms
 *    is printed too) and the aggregate MB/s.
 *  - export-nar of many-small through a daemon serving the store the local
 *    runs read.
 *  - one seeded 1 GiB file: copy daemon → local and local → daemon against
 *    `cat` of the file through the daemon (the copy table).
 *
 * Targets (issue 14, before it issue 5): blob put ≥ 500 MB/s and read ≥ 800
 * MB/s through the daemon; import of many-small and its export-nar through
 * the daemon ≤ 1.5× local; copy of the 1 GiB file either way ≥ 200 MB/s and
 * ≥ 0.5× the cat; copy local → local and local → daemon of few-large ≥ 400
 * MB/s; the daemon serving 32 readers ≤ 200 MiB peak RSS. Under
 * BENCH_QUICK=1 the blob is 16 MiB and the file 32 MiB.
 *
 * A second table (run once, figures are counts and bytes, not times): the
 * second copy of a slightly changed tree moves only what changed. few-large
 * is copied to a fresh local store and to a fresh daemon; then a copy of
 * the tree with a few bytes overwritten inside one 64 MiB file is imported
 * into the source store and copied to both again. Reported for that second
 * copy: blobs + directories sent and bytes sent (from `copy --json`), and
 * how much the target store grew (sum of its object files), against what
 * changed between the two trees (distinct new file contents, directories
 * on the way to the changed file, and the bytes of those new contents).
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { randomBytes, rng } from '../test/helpers/trees.js'
import { makeBigFile } from './big.js'
import { sized, sizeText } from './quick.js'
import { atMostReference, equalsReference, mibAtMost, rateAtLeast, rateAndShareAtLeast, ratioAtMost, type Target, type Unit } from './targets.js'

const MiB = 1024 * 1024
const BLOB_BYTES = sized(256, 16) * MiB
const READERS = 32
/** The one file copied between a daemon and a local store (issue 14: 1 GiB). */
export const COPY_BYTES = sized(1024, 32) * MiB

export type { Unit }

export interface DaemonBenchContext {
  /** The snapshot's bin/run.js. */
  bin: string
  repo: string
  tmpRoot: string
  reps: number
  env: NodeJS.ProcessEnv
  devNull: number
  trees: Record<string, string>
  stats: Record<string, { bytes: number }>
  /** Runs our CLI (wall time spawn → exit); rejects on a non-zero exit. */
  run(args: string[], stdout: 'pipe' | 'hash' | number): Promise<{ ms: number; stdout: string; sha256?: string }>
  /** A row of the daemon table (daemon vs local), or with `section: 'changed'` of the changed-tree table (ours vs what changed). */
  addRow(figure: string, unit: Unit, daemon: number[], local?: number[], target?: Target, section?: 'daemon' | 'changed' | 'copy'): void
  check(name: string, ok: boolean, detail: string): void
  /** A line printed under the daemon table, or under the changed-tree table. */
  note(line: string, section?: 'daemon' | 'changed'): void
  rmTree(p: string): void
}

// ---------------------------------------------------------------- a daemon

export interface BenchDaemon {
  url: string
  /** The Nix binary cache URL, when started with --http-listen. */
  http?: string
  pid: number
  /** What it wrote to stderr so far. */
  log(): string
  stop(): Promise<number | null>
}

/** Daemons whose log says how many blobs went in batches (BatchBlobService), to check the rows measure that path. */
const tracing = (ctx: DaemonBenchContext): DaemonBenchContext => ({ ...ctx, env: { ...ctx.env, TVIX_STORE_TRACE_BATCHES: '1' } })
const batchedBlobs = (log: string, kind: 'ReadBlobs' | 'PutBlobs') => [...log.matchAll(new RegExp(`trace: ${kind} of (\\d+) blobs`, 'g'))].reduce((n, m) => n + Number(m[1]), 0)

/** A daemon on `store` at 127.0.0.1:<free port>, with `extraArgs` (e.g. --http-listen); resolves once it serves. */
export function startDaemon(ctx: Pick<DaemonBenchContext, 'bin' | 'repo' | 'env'>, store: string, extraArgs: string[] = []): Promise<BenchDaemon> {
  const proc = spawn(process.execPath, [ctx.bin, 'daemon', '--store', store, '--listen', '127.0.0.1:0', ...extraArgs], {
    cwd: ctx.repo,
    env: ctx.env,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`daemon did not start:\n${log}`))
    }, 20_000)
    proc.on('error', reject)
    void exited.then((code) => reject(new Error(`daemon exited with ${code}:\n${log}`)))
    proc.stderr!.on('data', (c: Buffer) => {
      log += c.toString()
      const m = / at (grpc\+\S+)/.exec(log)
      if (m) {
        clearTimeout(timer)
        resolve({
          url: m[1]!,
          http: /Nix binary cache at (http:\/\/\S+)/.exec(log)?.[1],
          pid: proc.pid!,
          log: () => log,
          stop: async () => {
            proc.kill('SIGTERM')
            const code = await exited
            if (code !== 0) console.error(`daemon exited with ${code}:\n${log.slice(-2000)}`)
            return code
          },
        })
      }
    })
  })
}

/** A field of /proc/<pid>/status in KiB (VmRSS now, VmHWM the peak so far); undefined off Linux. */
export function procKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

/** User + system CPU seconds of a process so far (Linux). */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ').map(Number)
    return (f[11]! + f[12]!) / 100
  } catch {
    return undefined
  }
}

/** Exit codes of every daemon stopped, checked once at the end. */
const stops: Array<{ when: string; code: number | null }> = []
async function stopped(d: BenchDaemon, when: string): Promise<void> {
  stops.push({ when, code: await d.stop() })
}

export const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000)
const alternate = (rep: number) => (rep % 2 === 0 ? (['daemon', 'local'] as const) : (['local', 'daemon'] as const))

// ---------------------------------------------------------------- the runs

/** bench/grpc-blob.ts against `url`, in a child process of its own. */
function blobScript(ctx: DaemonBenchContext, url: string, file: string): Promise<{ bytes: number; putMs: number; readMs: number; digest: string }> {
  const openStore = path.join(path.dirname(path.dirname(ctx.bin)), 'dist/backends/open-store.js')
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ctx.repo, 'bench/grpc-blob.ts'), url, file], {
      cwd: ctx.repo,
      env: { ...ctx.env, BENCH_OPEN_STORE: openStore },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr.on('data', (c: Buffer) => (err += c.toString()))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`grpc-blob.ts ${url} failed (exit ${code}):\n${err.slice(-2000)}`))))
  })
}

async function benchBlobs(ctx: DaemonBenchContext): Promise<void> {
  console.error(`[daemon] gRPC blob put/read of ${BLOB_BYTES / MiB} MiB ×${ctx.reps} (fresh store and daemon each), same script on a local store`)
  const file = path.join(ctx.tmpRoot, 'inputs', 'blob-256M')
  fs.writeFileSync(file, randomBytes(BLOB_BYTES, 0xb10b))
  const put: Record<'daemon' | 'local', number[]> = { daemon: [], local: [] }
  const read: Record<'daemon' | 'local', number[]> = { daemon: [], local: [] }
  const digests = new Set<string>()
  for (let rep = 0; rep < ctx.reps; rep++) {
    for (const where of alternate(rep)) {
      const store = path.join(ctx.tmpRoot, 'stores', `blob-${where}-${rep}`)
      const d = where === 'daemon' ? await startDaemon(ctx, store) : undefined
      try {
        const r = await blobScript(ctx, d?.url ?? store, file)
        put[where].push(mbps(r.bytes, r.putMs))
        read[where].push(mbps(r.bytes, r.readMs))
        digests.add(r.digest)
      } finally {
        if (d) await stopped(d, 'blob runs')
      }
      ctx.rmTree(store)
    }
  }
  ctx.check('daemon: every blob put returned the same digest', digests.size === 1, [...digests].join(', '))
  ctx.addRow(`gRPC blob put, ${BLOB_BYTES / MiB} MiB (in-process)`, 'MB/s', put.daemon, put.local, rateAtLeast(500))
  ctx.addRow(`gRPC blob read, ${BLOB_BYTES / MiB} MiB (in-process)`, 'MB/s', read.daemon, read.local, rateAtLeast(800))
  fs.rmSync(file, { force: true })
}

/** Issue 14: many small files imported through a daemon in ≤ 1.5× the local import. */
const IMPORT_TARGETS: Record<string, Target> = { 'many-small': ratioAtMost(1.5) }

/** Imports `name` through a fresh daemon and into a fresh local store; returns a local store that holds it. */
async function benchImport(ctx: DaemonBenchContext, name: string, keepLocal: boolean): Promise<{ store: string; storePath: string } | undefined> {
  console.error(`[daemon] import ${name} ×${ctx.reps}: through a fresh daemon vs a fresh local store`)
  const tree = ctx.trees[name]!
  const ms: Record<'daemon' | 'local', number[]> = { daemon: [], local: [] }
  const hwm: number[] = []
  const printed = new Set<string>()
  let kept: string | undefined
  for (let rep = 0; rep < ctx.reps; rep++) {
    for (const where of alternate(rep)) {
      const store = path.join(ctx.tmpRoot, 'stores', `import-${where}-${name}-${rep}`)
      if (where === 'local') {
        const r = await ctx.run(['import', '--store', store, tree], 'pipe')
        ms.local.push(r.ms)
        printed.add(r.stdout.trim())
        if (keepLocal && !kept) {
          kept = store
          continue
        }
      } else {
        const d = await startDaemon(tracing(ctx), store)
        try {
          const r = await ctx.run(['import', '--store', d.url, tree], 'pipe')
          ms.daemon.push(r.ms)
          printed.add(r.stdout.trim())
          if (rep === 0 && name === 'many-small') ctx.check(`daemon: the import of ${name} through the daemon put its small files in batches`, batchedBlobs(d.log(), 'PutBlobs') > 0, d.log().slice(-500))
          const peak = procKiB(d.pid, 'VmHWM')
          if (peak !== undefined) hwm.push(peak / 1024)
        } finally {
          await stopped(d, 'import runs')
        }
      }
      ctx.rmTree(store)
    }
  }
  ctx.check(`daemon: imports of ${name} through the daemon and locally print the same store path`, printed.size === 1, [...printed].join(', '))
  ctx.addRow(`import ${name}`, 's', ms.daemon, ms.local, IMPORT_TARGETS[name])
  if (hwm.length > 0) ctx.addRow(`daemon peak RSS, import ${name}`, 'MiB', hwm)
  return kept ? { store: kept, storePath: [...printed][0]! } : undefined
}

/** copy of few-large local → local and local → daemon; returns the last daemon target store (it holds the path). */
async function benchCopy(ctx: DaemonBenchContext, name: string, src: { store: string; storePath: string }): Promise<string> {
  console.error(`[daemon] copy ${name} ×${ctx.reps}: local → fresh local store vs local → fresh daemon`)
  const bytes = ctx.stats[name]!.bytes
  const rate: Record<'daemon' | 'local', number[]> = { daemon: [], local: [] }
  let last = ''
  for (let rep = 0; rep < ctx.reps; rep++) {
    for (const where of alternate(rep)) {
      const store = path.join(ctx.tmpRoot, 'stores', `copy-${where}-${name}-${rep}`)
      const d = where === 'daemon' ? await startDaemon(ctx, store) : undefined
      try {
        const r = await ctx.run(['copy', '--from', src.store, '--to', d?.url ?? store, src.storePath], 'pipe')
        rate[where].push(mbps(bytes, r.ms))
        ctx.check(`daemon: copy of ${name} to a ${where === 'daemon' ? 'daemon' : 'local store'} reports the path copied`, r.stdout.trim() === src.storePath, JSON.stringify(r.stdout))
      } finally {
        if (d) await stopped(d, 'copy runs')
      }
      if (where === 'daemon' && rep === ctx.reps - 1) last = store
      else ctx.rmTree(store)
    }
  }
  ctx.addRow(`copy ${name} from a local store (MB/s of contents)`, 'MB/s', rate.daemon, rate.local, rateAtLeast(400, true))
  return last
}

/** 32 concurrent export-nar readers of `storePath` through one fresh daemon on `store`. */
async function benchReaders(ctx: DaemonBenchContext, name: string, store: string, src: { store: string; storePath: string }): Promise<void> {
  const d = await startDaemon(ctx, store)
  try {
    console.error(`[daemon] NAR identity check (untimed), then ${READERS} concurrent export-nar readers of ${name} (once)`)
    const [remote, local] = [await ctx.run(['export-nar', '--store', d.url, src.storePath], 'hash'), await ctx.run(['export-nar', '--store', src.store, src.storePath], 'hash')]
    ctx.check(`daemon: export-nar ${name} through the daemon (after copy) equals the local export`, remote.sha256 === local.sha256, `${remote.sha256} vs ${local.sha256}`)
    // A fresh daemon for the readers, so its peak RSS (VmHWM) covers start-up and the readers only.
    await stopped(d, 'before readers')
  } catch (e) {
    await d.stop()
    throw e
  }
  const r = await startDaemon(ctx, store)
  try {
    const idle = procKiB(r.pid, 'VmRSS')
    const cpu0 = cpuSeconds(r.pid)
    let sampled = 0
    const timer = setInterval(() => {
      const v = procKiB(r.pid, 'VmRSS')
      if (v !== undefined && v > sampled) sampled = v
    }, 100)
    const t0 = performance.now()
    try {
      await Promise.all(Array.from({ length: READERS }, () => ctx.run(['export-nar', '--store', r.url, src.storePath], ctx.devNull)))
    } finally {
      clearInterval(timer)
    }
    const wall = performance.now() - t0
    const peak = procKiB(r.pid, 'VmHWM')
    const cpu1 = cpuSeconds(r.pid)
    const narBytes = ctx.stats[name]!.bytes
    ctx.addRow(`${READERS} concurrent export-nar ${name}, aggregate`, 'MB/s', [mbps(READERS * narBytes, wall)])
    if (peak !== undefined) ctx.addRow(`daemon peak RSS, ${READERS} concurrent export-nar ${name}`, 'MiB', [peak / 1024], undefined, mibAtMost(200))
    if (idle !== undefined && cpu0 !== undefined && cpu1 !== undefined) {
      ctx.note(
        `daemon serving ${READERS} export-nar of ${name}: ${(wall / 1000).toFixed(1)} s wall, daemon CPU ${(cpu1 - cpu0).toFixed(1)} s, ` +
          `RSS idle ${(idle / 1024).toFixed(1)} MiB, sampled max ${(sampled / 1024).toFixed(1)} MiB, VmHWM ${((peak ?? 0) / 1024).toFixed(1)} MiB`,
      )
    }
  } finally {
    await stopped(r, 'after readers')
  }
}

/**
 * export-nar of `name` through a daemon serving the very store directory
 * the local runs read (the path is there already), to /dev/null, runs
 * alternating; first an untimed check that both give the same NAR.
 * Issue 14: ≤ 1.5× the local export.
 */
async function benchExportVia(ctx: DaemonBenchContext, name: string, src: { store: string; storePath: string }): Promise<void> {
  console.error(`[daemon] export-nar ${name} ×${ctx.reps}: through a daemon on its store vs that store locally`)
  const d = await startDaemon(tracing(ctx), src.store)
  try {
    const [remote, local] = [await ctx.run(['export-nar', '--store', d.url, src.storePath], 'hash'), await ctx.run(['export-nar', '--store', src.store, src.storePath], 'hash')]
    ctx.check(`daemon: export-nar ${name} through the daemon equals the local export`, remote.sha256 === local.sha256, `${remote.sha256} vs ${local.sha256}`)
    ctx.check(`daemon: export-nar ${name} through the daemon read its small files in batches`, batchedBlobs(d.log(), 'ReadBlobs') > 0, d.log().slice(-500))
    const ms: Record<'daemon' | 'local', number[]> = { daemon: [], local: [] }
    const daemonCpu: number[] = []
    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const where of alternate(rep)) {
        const cpu0 = cpuSeconds(d.pid)
        ms[where].push((await ctx.run(['export-nar', '--store', where === 'daemon' ? d.url : src.store, src.storePath], ctx.devNull)).ms)
        const cpu1 = cpuSeconds(d.pid)
        if (where === 'daemon' && cpu0 !== undefined && cpu1 !== undefined) daemonCpu.push(cpu1 - cpu0)
      }
    }
    ctx.addRow(`export-nar ${name} (to /dev/null)`, 's', ms.daemon, ms.local, ratioAtMost(1.5))
    if (daemonCpu.length > 0) ctx.note(`export-nar ${name} through the daemon: daemon CPU ${daemonCpu.map((c) => c.toFixed(2)).join(', ')} s per run (the client's is in its wall time)`)
  } finally {
    await stopped(d, 'export runs')
  }
}

/**
 * One seeded file of COPY_BYTES imported into a local store, served by a
 * daemon on that store: copy daemon → a fresh local store, copy local → a
 * fresh daemon, and `cat` of the file through the daemon (the reference:
 * what the link carries without copy's work), runs alternating. Issue 14:
 * each copy ≥ 200 MB/s and ≥ 0.5× the cat.
 */
async function benchCopyOneFile(ctx: DaemonBenchContext): Promise<void> {
  const label = sizeText(COPY_BYTES)
  const file = path.join(ctx.tmpRoot, 'inputs', `one-${label.replace(' ', '')}.bin`)
  makeBigFile(file, COPY_BYTES)
  const src = path.join(ctx.tmpRoot, 'stores', 'copy-one-src')
  const storePath = (await ctx.run(['import', '--store', src, file], 'pipe')).stdout.trim()
  console.error(`[daemon] a ${label} file ×${ctx.reps}: copy daemon → local, copy local → daemon, cat through the daemon`)
  const served = await startDaemon(ctx, src)
  const rate = { from: [] as number[], to: [] as number[], cat: [] as number[] }
  try {
    const whole = await ctx.run(['cat', '--store', served.url, storePath], 'hash')
    const want = createHash('sha256').update(fs.readFileSync(file)).digest('hex')
    ctx.check(`copy: cat of the ${label} file through the daemon gives its bytes`, whole.sha256 === want, `${whole.sha256} vs ${want}`)
    for (let rep = 0; rep < ctx.reps; rep++) {
      const fresh = path.join(ctx.tmpRoot, 'stores', `copy-one-${rep}`)
      const from = await ctx.run(['copy', '--from', served.url, '--to', fresh, storePath], 'pipe')
      rate.from.push(mbps(COPY_BYTES, from.ms))
      ctx.rmTree(fresh)
      rate.cat.push(mbps(COPY_BYTES, (await ctx.run(['cat', '--store', served.url, storePath], ctx.devNull)).ms))
      const target = await startDaemon(ctx, fresh)
      try {
        const to = await ctx.run(['copy', '--from', src, '--to', target.url, storePath], 'pipe')
        rate.to.push(mbps(COPY_BYTES, to.ms))
        ctx.check(`copy: both copies of the ${label} file report the path (run ${rep + 1})`, from.stdout.trim() === storePath && to.stdout.trim() === storePath, `${from.stdout} / ${to.stdout}`)
      } finally {
        await stopped(target, 'one-file copies')
      }
      ctx.rmTree(fresh)
    }
  } finally {
    await stopped(served, 'one-file copies')
  }
  const target = rateAndShareAtLeast(200, 0.5)
  ctx.addRow(`copy daemon → local, ${label} (MB/s of contents)`, 'MB/s', rate.from, rate.cat, target, 'copy')
  ctx.addRow(`copy local → daemon, ${label} (MB/s of contents)`, 'MB/s', rate.to, rate.cat, target, 'copy')
  ctx.rmTree(src)
  fs.rmSync(file, { force: true })
}

// ---------------------------------------------------------------- second copy of a changed tree

/** Bytes overwritten inside one large file of the changed tree. */
const EDIT_BYTES = 100

/**
 * Copies `tree` to `dest` and overwrites EDIT_BYTES seeded random bytes at a
 * seeded offset inside its largest file (so the file keeps its size and only
 * a few bytes differ).
 */
function makeChanged(tree: string, dest: string): { file: string; size: number; offset: number; bytes: number } {
  fs.mkdirSync(path.dirname(dest), { recursive: true })
  fs.cpSync(tree, dest, { recursive: true, verbatimSymlinks: true })
  const files = fs
    .readdirSync(dest)
    .map((n) => ({ n, size: fs.lstatSync(path.join(dest, n)).size, file: fs.lstatSync(path.join(dest, n)).isFile() }))
    .filter((f) => f.file)
    .sort((a, b) => b.size - a.size || (a.n < b.n ? -1 : 1))
  const target = files[0]!
  const r = rng(0xc4a93d)
  const offset = Math.floor(target.size / 4 + r() * (target.size / 2))
  const fd = fs.openSync(path.join(dest, target.n), 'r+')
  try {
    fs.writeSync(fd, randomBytes(EDIT_BYTES, 0xc4a93e), 0, EDIT_BYTES, offset)
  } finally {
    fs.closeSync(fd)
  }
  return { file: target.n, size: target.size, offset, bytes: EDIT_BYTES }
}

/** Per relative path: a file's mode and SHA-256, or a symlink's target, or 'dir'. */
function entries(root: string, rel = '', out = new Map<string, string>()): Map<string, string> {
  const p = path.join(root, rel)
  const st = fs.lstatSync(p)
  if (st.isSymbolicLink()) out.set(rel, `link ${fs.readlinkSync(p)}`)
  else if (st.isDirectory()) {
    out.set(rel, 'dir')
    for (const n of fs.readdirSync(p)) entries(root, rel ? `${rel}/${n}` : n, out)
  } else out.set(rel, `file ${st.mode & 0o100 ? 'x' : '-'} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex')} ${st.size}`)
  return out
}

/**
 * What changed from tree `a` to tree `b`, in the castore's terms: the file
 * contents of `b` that `a` does not have (distinct, with their bytes), and
 * the directories of `b` whose listing changed (every directory on the way
 * from the root to a changed, added or removed entry).
 */
function treeDiff(a: string, b: string): { contents: number; contentBytes: number; dirs: number } {
  const ea = entries(a)
  const eb = entries(b)
  const contentsOfA = new Set([...ea.values()].filter((v) => v.startsWith('file ')).map((v) => v.split(' ')[2]))
  const fresh = new Map<string, number>()
  const dirs = new Set<string>()
  const touch = (rel: string) => {
    for (let d = path.posix.dirname(rel); ; d = path.posix.dirname(d)) {
      dirs.add(d === '.' ? '' : d)
      if (d === '.' || d === '/') break
    }
  }
  for (const [rel, v] of eb) {
    if (ea.get(rel) === v) continue
    if (rel !== '') touch(rel)
    if (v.startsWith('file ')) {
      const [, , digest, size] = v.split(' ')
      if (!contentsOfA.has(digest!)) fresh.set(digest!, Number(size))
    }
  }
  for (const rel of ea.keys()) if (!eb.has(rel) && rel !== '') touch(rel)
  return { contents: fresh.size, contentBytes: [...fresh.values()].reduce((x, y) => x + y, 0), dirs: dirs.size }
}

/** Bytes of the object files of one of our stores (blobs/, dirs/, pathinfo/; not tmp/). */
function storeBytes(store: string): number {
  let n = 0
  const walk = (dir: string) => {
    if (!fs.existsSync(dir)) return
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.isFile()) n += fs.statSync(p).size
    }
  }
  for (const d of ['blobs', 'dirs', 'pathinfo']) walk(path.join(store, d))
  return n
}

interface CopyJson {
  copied: string[]
  skipped: string[]
  blobs: { copied: number; skipped: number }
  directories: { copied: number; skipped: number }
  bytes: number
}

/**
 * `name` is in `src.store`; a slightly changed copy of it is imported there
 * too, and both are copied one after the other to a fresh local store and to
 * a fresh daemon.
 */
async function benchChanged(ctx: DaemonBenchContext, name: string, src: { store: string; storePath: string }): Promise<void> {
  const tree = ctx.trees[name]!
  const changed = path.join(ctx.tmpRoot, 'inputs-changed', name)
  const edit = makeChanged(tree, changed)
  const diff = treeDiff(tree, changed)
  const second = (await ctx.run(['import', '--store', src.store, changed], 'pipe')).stdout.trim()
  ctx.check(`changed tree: the changed ${name} imports as another store path`, second !== src.storePath && second.startsWith('/'), second)
  console.error(`[daemon] second copy of a changed ${name} (${edit.bytes} bytes overwritten in ${edit.file}): to a local store and to a daemon`)
  ctx.note(
    `changed tree: ${name} with ${edit.bytes} bytes overwritten at offset ${edit.offset} of ${edit.file} (${(edit.size / MiB).toFixed(0)} MiB); ` +
      `changed between the trees: ${diff.contents} file content(s) of ${(diff.contentBytes / MiB).toFixed(1)} MiB, ${diff.dirs} directory(ies)`,
    'changed',
  )
  for (const where of ['local', 'daemon'] as const) {
    const store = path.join(ctx.tmpRoot, 'stores', `changed-${where}`)
    const d = where === 'daemon' ? await startDaemon(ctx, store) : undefined
    const label = where === 'daemon' ? 'local → daemon' : 'local → local'
    try {
      const copy = async (p: string): Promise<CopyJson> => JSON.parse((await ctx.run(['copy', '--json', '--from', src.store, '--to', d?.url ?? store, p], 'pipe')).stdout) as CopyJson
      const a = await copy(src.storePath)
      const before = storeBytes(store)
      const b = await copy(second)
      const grew = storeBytes(store) - before
      ctx.check(`changed tree: the second copy ${label} copies just the changed path`, b.copied.length === 1 && b.copied[0] === second && b.skipped.length === 0, JSON.stringify(b))
      ctx.addRow(`${label}: blobs + directories sent`, 'count', [b.blobs.copied + b.directories.copied], [diff.contents + diff.dirs], equalsReference, 'changed')
      ctx.addRow(`${label}: bytes sent (copy --json "bytes")`, 'bytes', [b.bytes], [diff.contentBytes], atMostReference, 'changed')
      ctx.addRow(`${label}: target store grew by`, 'bytes', [grew], [diff.contentBytes], atMostReference, 'changed')
      ctx.note(
        `changed tree, ${label}: first copy sent ${a.blobs.copied} blobs + ${a.directories.copied} directories, ${(a.bytes / MiB).toFixed(1)} MiB, target store ${(before / MiB).toFixed(1)} MiB; ` +
          `second copy sent ${b.blobs.copied} blob(s) + ${b.directories.copied} directory(ies) (skipped ${b.blobs.skipped} blobs, ${b.directories.skipped} directories), ${b.bytes} bytes, target store +${grew} bytes`,
        'changed',
      )
    } finally {
      if (d) await stopped(d, 'changed-tree copies')
    }
    ctx.rmTree(store)
  }
  ctx.rmTree(path.dirname(changed))
}

/** Runs one part and logs how long it took (stderr). */
async function timed<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now()
  const r = await fn()
  console.error(`[daemon] ${what} took ${((performance.now() - t0) / 1000).toFixed(1)} s`)
  return r
}

export async function benchDaemon(ctx: DaemonBenchContext): Promise<void> {
  await timed('blob put/read', () => benchBlobs(ctx))
  const src = await timed('import few-large', () => benchImport(ctx, 'few-large', true))
  const small = await timed('import many-small', () => benchImport(ctx, 'many-small', true))
  await timed('export-nar many-small', () => benchExportVia(ctx, 'many-small', small!))
  ctx.rmTree(small!.store)
  await timed(`one ${sizeText(COPY_BYTES)} file`, () => benchCopyOneFile(ctx))
  const daemonStore = await timed('copy few-large', () => benchCopy(ctx, 'few-large', src!))
  await timed(`${READERS} readers`, () => benchReaders(ctx, 'few-large', daemonStore, src!))
  await timed('second copy of a changed tree', () => benchChanged(ctx, 'few-large', src!))
  ctx.rmTree(daemonStore)
  ctx.rmTree(src!.store)
  const bad = stops.filter((s) => s.code !== 0)
  ctx.check(`daemon: all ${stops.length} daemons stopped with exit code 0 on SIGTERM`, bad.length === 0, bad.map((s) => `${s.when}: ${s.code}`).join(', '))
}
