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
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { randomBytes } from '../test/helpers/trees.js'

const MiB = 1024 * 1024
const BLOB_BYTES = 256 * MiB
const READERS = 32

export type Unit = 's' | 'ms' | 'MiB' | 'MB/s'

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
  addRow(figure: string, unit: Unit, daemon: number[], local?: number[]): void
  check(name: string, ok: boolean, detail: string): void
  note(line: string): void
  rmTree(p: string): void
}

// ---------------------------------------------------------------- a daemon

interface BenchDaemon {
  url: string
  pid: number
  stop(): Promise<number | null>
}

function startDaemon(ctx: DaemonBenchContext, store: string): Promise<BenchDaemon> {
  const proc = spawn(process.execPath, [ctx.bin, 'daemon', '--store', store, '--listen', '127.0.0.1:0'], {
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
          pid: proc.pid!,
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
function procKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined
  }
}

/** User + system CPU seconds of a process so far (Linux). */
function cpuSeconds(pid: number): number | undefined {
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

const mbps = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000)
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
  ctx.addRow(`gRPC blob put, ${BLOB_BYTES / MiB} MiB (in-process)`, 'MB/s', put.daemon, put.local)
  ctx.addRow(`gRPC blob read, ${BLOB_BYTES / MiB} MiB (in-process)`, 'MB/s', read.daemon, read.local)
  fs.rmSync(file, { force: true })
}

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
        const d = await startDaemon(ctx, store)
        try {
          const r = await ctx.run(['import', '--store', d.url, tree], 'pipe')
          ms.daemon.push(r.ms)
          printed.add(r.stdout.trim())
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
  ctx.addRow(`import ${name}`, 's', ms.daemon, ms.local)
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
  ctx.addRow(`copy ${name} from a local store (MB/s of contents)`, 'MB/s', rate.daemon, rate.local)
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
    if (peak !== undefined) ctx.addRow(`daemon peak RSS, ${READERS} concurrent export-nar ${name}`, 'MiB', [peak / 1024])
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
  await timed('import many-small', () => benchImport(ctx, 'many-small', false))
  const daemonStore = await timed('copy few-large', () => benchCopy(ctx, 'few-large', src!))
  await timed(`${READERS} readers`, () => benchReaders(ctx, 'few-large', daemonStore, src!))
  ctx.rmTree(daemonStore)
  ctx.rmTree(src!.store)
  const bad = stops.filter((s) => s.code !== 0)
  ctx.check(`daemon: all ${stops.length} daemons stopped with exit code 0 on SIGTERM`, bad.length === 0, bad.map((s) => `${s.when}: ${s.code}`).join(', '))
}
