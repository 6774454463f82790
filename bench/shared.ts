/**
 * The shared part of `npm run bench` (BENCH_PARTS=shared, issue 15 item 7):
 * the store on S3 (blobs, Ceph radosgw) + PostgreSQL (Directories,
 * PathInfos), against real servers: the suite's when
 * TVIX_TEST_BACKENDS_FILE names them, else its own (test/helpers/servers.ts,
 * in a temp dir removed at the end, stopped also on failure); where the
 * programs are missing, one line says the part is skipped and why.
 *
 * Timed (median of BENCH_REPS, the three ways interleaved, each run on a
 * fresh bucket + database or store directory): import and export-nar of
 * the daemon part's trees (many-small, few-large)
 *  - through a daemon on `--store postgres://… --blob-service-addr s3://…`,
 *  - through a daemon on a local store (the reference: ratio = S3+PG / local),
 *  - by the CLI directly on S3 + PostgreSQL (second ratio = daemon / CLI);
 * wall time, CPU of the client (GNU time) and of the daemon (/proc), each
 * daemon started before the clock and stopped after it: a fresh one for
 * the import, another for the export.
 *
 * Counted (second table): S3 requests per MiB imported and exported (from
 * TVIX_S3_STATS, the counter in src/backends/s3/client.ts: every process
 * appends one JSON line of its requests at exit), bytes stored in the
 * bucket per MiB imported (ListObjectsV2 sizes), PostgreSQL rows per path
 * (count(*) of each table), two releases of bench/space.ts's tree on S3 vs
 * one (bytes in the bucket; target ≤ 1.15×), and `gc` on a store of ~100k
 * objects (2k under BENCH_QUICK=1): small distinct files imported as a few
 * paths, half of them rooted where the store keeps roots; while the store
 * refuses gc, the row says so.
 */
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { AwsClient } from 'aws4fetch'
import { openStore } from '../src/backends/open-store.js'
import { openPostgres } from '../src/backends/postgres/index.js'
import { parseStoreUrl } from '../src/backends/registry.js'
import type { S3Address } from '../src/backends/s3/address.js'
import { S3BlobService } from '../src/backends/s3/blob.js'
import { credentialsFromEnv, S3Client } from '../src/backends/s3/client.js'
import { toHex } from '../src/castore/digest.js'
import type { Directory } from '../src/castore/node.js'
import { parseBasename } from '../src/store/store-path.js'
import { forEachLimit } from '../src/util/pool.js'
import { type BackendsInfo, backendsDir, missingPrograms, startBackends } from '../test/helpers/servers.js'
import { freshBucket, freshDatabase } from '../test/helpers/suite-servers.js'
import { type BenchDaemon, cpuSeconds, startDaemon } from './daemon.js'
import { QUICK, sized } from './quick.js'
import { makeRelease1, makeRelease2 } from './space.js'
import { fmt, type Target, textTable } from './targets.js'

const MiB = 1024 * 1024
/** Small distinct files in the gc store (its S3 objects), in GC_PATHS paths of directories of GC_DIR_FILES. */
const GC_FILES = sized(100_000, 2_000)
const GC_PATHS = 4
const GC_DIR_FILES = sized(500, 50)
/**
 * Files of many-small under BENCH_QUICK=1: the daemon part's 1,000 would
 * take a minute of CPU here alone (S3 + PostgreSQL costs ~10 ms of CPU a
 * small file through a daemon), past the quick run's ~40 s.
 */
const QUICK_SMALL = 300
/** The issue's target for two releases of a tree on S3. */
const TWO_RELEASES: Target = { text: 'ours ≤ 1.15×', ok: (v) => v.ratio !== undefined && v.ratio <= 1.15 }

export interface SharedBenchContext {
  /** The snapshot's bin/run.js. */
  bin: string
  repo: string
  tmpRoot: string
  reps: number
  env: NodeJS.ProcessEnv
  /** The daemon part's trees, by name, and their sizes. */
  trees: Record<string, string>
  stats: Record<string, { bytes: number }>
  /** bench/run.ts's generator of many-small: under BENCH_QUICK=1 the part makes its own of QUICK_SMALL files. */
  makeManySmall(root: string, count: number): void
  /** Runs our CLI with `env` (wall spawn → exit, CPU of the process); rejects on a non-zero exit with its stderr. */
  run(args: string[], stdout: 'pipe' | 'hash' | number, env: NodeJS.ProcessEnv): Promise<{ ms: number; cpuMs?: number; stdout: string; sha256?: string }>
  check(name: string, ok: boolean, detail: string): void
  rmTree(p: string): void
}

/** A row: its figure, then preformatted cells, then target and met?. */
type Cells = string[]
export interface SharedResult {
  skipped?: string
  timeRows: { figure: string; cells: Cells; samples: Record<string, number[]> }[]
  storeRows: { figure: string; cells: Cells; target?: string; met?: boolean }[]
  notes: string[]
  servers: string
  seconds: number
}

// ---------------------------------------------------------------- servers, buckets, databases

interface SharedStore {
  /** `--store` and `--blob-service-addr` of a fresh bucket + database. */
  flags: string[]
  pgUrl: string
  s3Url: string
  bucket: string
  drop(): Promise<void>
}

class Servers {
  readonly aws: AwsClient
  constructor(
    readonly info: Required<BackendsInfo>,
    readonly stop: () => Promise<void>,
  ) {
    const { accessKeyId, secretAccessKey, region } = info.s3
    this.aws = new AwsClient({ accessKeyId, secretAccessKey, region, service: 's3', retries: 3 })
  }

  get env(): NodeJS.ProcessEnv {
    return { AWS_ACCESS_KEY_ID: this.info.s3.accessKeyId, AWS_SECRET_ACCESS_KEY: this.info.s3.secretAccessKey }
  }

  /** A new bucket and database; drop() empties and removes both. */
  async fresh(): Promise<SharedStore> {
    const s3Url = await freshBucket(this.info.s3)
    const db = await freshDatabase(this.info.pg)
    const bucket = new URL(s3Url.replace(/^s3:/, 'http:')).hostname
    return { flags: ['--store', db.url, '--blob-service-addr', s3Url], pgUrl: db.url, s3Url, bucket, drop: async () => (await this.dropBucket(bucket), await db.drop()) }
  }

  private bucketUrl(bucket: string, query = ''): string {
    return `${this.info.s3.endpoint}/${bucket}${query}`
  }

  /** Every object of the bucket, page by page (ListObjectsV2): key and stored size. */
  async *objects(bucket: string): AsyncGenerator<{ key: string; size: number }> {
    let token: string | undefined
    do {
      const q = new URLSearchParams({ 'list-type': '2', 'max-keys': '1000' })
      if (token) q.set('continuation-token', token)
      const res = await this.aws.fetch(this.bucketUrl(bucket, `?${q}`))
      const page = await res.text()
      if (!res.ok) throw new Error(`listing bucket ${bucket}: HTTP ${res.status} ${page.slice(0, 300)}`)
      for (const m of page.matchAll(/<Contents>[\s\S]*?<Key>([^<]*)<\/Key>[\s\S]*?<Size>(\d+)<\/Size>[\s\S]*?<\/Contents>/g)) yield { key: m[1]!, size: Number(m[2]) }
      token = /<IsTruncated>true<\/IsTruncated>/.test(page) ? /<NextContinuationToken>([^<]*)</.exec(page)?.[1] : undefined
    } while (token)
  }

  async usage(bucket: string): Promise<{ objects: number; bytes: number }> {
    const u = { objects: 0, bytes: 0 }
    for await (const o of this.objects(bucket)) {
      u.objects++
      u.bytes += o.size
    }
    return u
  }

  /** Deletes every object (DeleteObjects, 1,000 a request), then the bucket. */
  private async dropBucket(bucket: string): Promise<void> {
    let batch: string[] = []
    const flush = async () => {
      if (batch.length === 0) return
      const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
      const body = `<Delete><Quiet>true</Quiet>${batch.map((k) => `<Object><Key>${esc(k)}</Key></Object>`).join('')}</Delete>`
      const res = await this.aws.fetch(this.bucketUrl(bucket, '?delete'), { method: 'POST', body, headers: { 'content-md5': createHash('md5').update(body).digest('base64') } })
      if (!res.ok) throw new Error(`emptying bucket ${bucket}: HTTP ${res.status} ${(await res.text()).slice(0, 300)}`)
      await res.arrayBuffer()
      batch = []
    }
    // Listed to the end first: deleting while listing would move the pages under the continuation token.
    const keys: string[] = []
    for await (const o of this.objects(bucket)) keys.push(o.key)
    for (const k of keys) {
      batch.push(k)
      if (batch.length === 1000) await flush()
    }
    await flush()
    const res = await this.aws.fetch(this.bucketUrl(bucket), { method: 'DELETE' })
    if (!res.ok && res.status !== 404) throw new Error(`removing bucket ${bucket}: HTTP ${res.status} ${(await res.text()).slice(0, 300)}`)
  }

  /** Rows in each tvix table of the database, and their size on disk (tables and indexes). */
  async pgRows(url: string): Promise<{ rows: Record<string, number>; bytes: number }> {
    const { default: pg } = await import('pg')
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    try {
      const tables = (await c.query<{ t: string }>("select tablename as t from pg_tables where schemaname = 'public' and tablename like 'tvix\\_%' and tablename <> 'tvix_schema' order by 1")).rows.map((r) => r.t)
      const rows: Record<string, number> = {}
      let bytes = 0
      for (const t of tables) {
        const r = (await c.query<{ n: string; b: string }>(`select count(*) as n, pg_total_relation_size('${t}') as b from ${t}`)).rows[0]!
        rows[t] = Number(r.n)
        bytes += Number(r.b)
      }
      return { rows, bytes }
    } finally {
      await c.end()
    }
  }
}

/** The suite's servers (TVIX_TEST_BACKENDS_FILE), or our own, or why there are none. */
async function openServers(): Promise<Servers | string> {
  const file = process.env.TVIX_TEST_BACKENDS_FILE
  if (file) {
    if (!fs.existsSync(file)) return `TVIX_TEST_BACKENDS_FILE names ${file}, which does not exist`
    const said = JSON.parse(fs.readFileSync(file, 'utf8')) as { ok?: BackendsInfo; skip?: string; fail?: string }
    if (!said.ok) return `the suite's servers are not there: ${said.skip ?? said.fail}`
    if (!said.ok.s3 || !said.ok.pg) return `${file} names no ${said.ok.s3 ? 'PostgreSQL' : 'S3'} server`
    return new Servers(said.ok as Required<BackendsInfo>, async () => {})
  }
  const missing = missingPrograms()
  if (missing) return missing
  const dir = backendsDir()
  console.error(`[shared] starting radosgw and PostgreSQL in ${dir}`)
  try {
    const running = await startBackends(dir)
    return new Servers(running as Required<BackendsInfo>, async () => {
      await running.stop()
      fs.rmSync(dir, { recursive: true, force: true })
    })
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true })
    throw e
  }
}

// ---------------------------------------------------------------- S3 request counts

type S3Stats = Record<string, number>
const REQUESTS = ['GET', 'HEAD', 'PUT', 'DELETE', 'LIST']
const requestsOf = (s: S3Stats) => REQUESTS.reduce((a, k) => a + (s[k] ?? 0), 0)

/** The one line TVIX_S3_STATS got from the process that just exited (a new file per process). */
function readStats(file: string): S3Stats {
  const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []
  if (lines.length !== 1) throw new Error(`expected one line of S3 request counts in ${file}, found ${lines.length}`)
  fs.rmSync(file)
  return JSON.parse(lines[0]!) as S3Stats
}

const breakdown = (s: S3Stats) => `${REQUESTS.map((k) => `${k} ${s[k] ?? 0}`).join(', ')} (${s.created ?? 0} PUTs created an object)`

// ---------------------------------------------------------------- import and export-nar, three ways

type Way = 'daemon on S3+PG' | 'daemon on local' | 'CLI on S3+PG'
const WAYS: Way[] = ['daemon on S3+PG', 'daemon on local', 'CLI on S3+PG']

interface Step {
  ms: number
  clientCpuMs?: number
  daemonCpuMs?: number
  s3?: S3Stats
}

interface WayRun {
  import: Step
  export: Step
  storePath: string
  nar: string
  bucket?: { objects: number; bytes: number }
  pg?: { rows: Record<string, number>; bytes: number }
}

let statsFiles = 0

async function oneWay(ctx: SharedBenchContext, servers: Servers, way: Way, tree: string, counted: boolean): Promise<WayRun> {
  const shared = way === 'daemon on local' ? undefined : await servers.fresh()
  const local = shared ? undefined : path.join(ctx.tmpRoot, 'stores', `shared-local-${statsFiles}`)
  const statsFile = () => path.join(ctx.tmpRoot, `s3-stats-${statsFiles++}.jsonl`)
  const env = { ...ctx.env, ...servers.env }
  try {
    /** One timed command: through a fresh daemon (its CPU over the command), or the CLI itself on the store. */
    const step = async (args: string[], stdout: 'pipe' | 'hash'): Promise<Step & { stdout: string; sha256?: string }> => {
      const stats = shared ? statsFile() : undefined
      const statsEnv = stats ? { TVIX_S3_STATS: stats } : {}
      if (way === 'CLI on S3+PG') {
        const r = await ctx.run([...args, ...shared!.flags], stdout, { ...env, ...statsEnv })
        return { ms: r.ms, clientCpuMs: r.cpuMs, s3: readStats(stats!), stdout: r.stdout, sha256: r.sha256 }
      }
      const d: BenchDaemon = await startDaemon({ bin: ctx.bin, repo: ctx.repo, env: { ...env, ...statsEnv } }, shared?.pgUrl ?? local!, shared ? ['--blob-service-addr', shared.s3Url] : [])
      let code: number | null = null
      try {
        const cpu0 = cpuSeconds(d.pid)
        const r = await ctx.run([...args, '--store', d.url], stdout, env)
        const cpu1 = cpuSeconds(d.pid)
        code = await d.stop()
        return { ms: r.ms, clientCpuMs: r.cpuMs, daemonCpuMs: cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0) * 1000 : undefined, s3: stats ? readStats(stats) : undefined, stdout: r.stdout, sha256: r.sha256 }
      } finally {
        if (code === null) code = await d.stop()
        if (code !== 0) ctx.check(`shared: a daemon (${way}) exits 0 on SIGTERM`, false, `exit ${code}`)
      }
    }
    const imp = await step(['import', tree], 'pipe')
    const storePath = imp.stdout.trim()
    const bucket = shared && counted ? await servers.usage(shared.bucket) : undefined
    const pg = shared && counted ? await servers.pgRows(shared.pgUrl) : undefined
    const exp = await step(['export-nar', storePath], 'hash')
    return { import: imp, export: exp, storePath, nar: exp.sha256!, bucket, pg }
  } finally {
    await shared?.drop()
    if (local) ctx.rmTree(local)
  }
}

function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** Bytes of the regular files under `p`. */
function treeBytes(p: string): number {
  const st = fs.lstatSync(p)
  if (st.isDirectory()) return fs.readdirSync(p).reduce((a, n) => a + treeBytes(path.join(p, n)), 0)
  return st.isFile() ? st.size : 0
}

const ratioText = (a: number | undefined, b: number | undefined) => (a === undefined || !b ? '–' : (a / b).toFixed(2))

// ---------------------------------------------------------------- the gc store

/** `files` small distinct files (each its own S3 object) in directories of GC_DIR_FILES. */
function makeGcTree(root: string, tag: string, files: number): void {
  for (let d = 0; d * GC_DIR_FILES < files; d++) {
    const dir = path.join(root, `d${d}`)
    fs.mkdirSync(dir, { recursive: true })
    for (let f = 0; f < GC_DIR_FILES && d * GC_DIR_FILES + f < files; f++) fs.writeFileSync(path.join(dir, `f${f}`), `${tag} ${d} ${f}\n`)
  }
}

/** Blob PUTs in flight while the gc store is filled (S3Client keeps 32 connections). */
const FILL_PUTS = 32

/**
 * Fills the gc store with `trees`, returning their store paths: imported by
 * the CLI into a local store (seconds), then copied by the engine
 * in-process, each blob one conditional PUT with FILL_PUTS in flight, each
 * path's Directories in one putClosure, then its PathInfo. `import` on S3 +
 * PostgreSQL checks every file twice (two HEADs besides its PUT, ~9 ms of
 * client CPU a file here), which would make 100k files most of an hour.
 * Set-up only: gc is what is timed.
 */
async function fillGcStore(ctx: SharedBenchContext, store: SharedStore, trees: string[]): Promise<string[]> {
  const local = path.join(ctx.tmpRoot, 'shared-gc-local')
  const paths = (await ctx.run(['import', '--store', local, ...trees], 'pipe', ctx.env)).stdout.trim().split('\n')
  const from = await openStore({ url: local })
  const s3 = new S3Client(parseStoreUrl(store.s3Url) as S3Address, credentialsFromEnv(store.s3Url))
  const blobs = new S3BlobService(s3)
  // Without the blobs: the Directory puts would HEAD every file again.
  const meta = await openPostgres(store.pgUrl, from.storeDir)
  try {
    for (const p of paths) {
      const info = (await from.pathInfos.get(parseBasename(path.basename(p)).digest))!
      const dirs: Directory[] = []
      if (info.node.kind === 'directory') for await (const d of from.directories.getClosure(info.node.digest)) dirs.push(d)
      const files = new Map(dirs.flatMap((d) => d.files.map((f) => [toHex(f.digest), f.digest] as const)))
      await forEachLimit(files.values(), FILL_PUTS, async (digest) => {
        const parts: Uint8Array[] = []
        for await (const c of (await from.blobs.open(digest))!) parts.push(c)
        await blobs.put(parts)
      })
      // getClosure gives parents before children; putClosure wants leaves first.
      await meta.directories.putClosure(dirs.reverse())
      await meta.pathInfos.put(info)
    }
  } finally {
    await from.close()
    await s3.close()
    await meta.close()
    ctx.rmTree(local)
  }
  return paths
}

/** What an ERR_UNSUPPORTED refusal (`--json`: one JSON error line) says, or undefined for any other failure. */
function unsupported(e: unknown): string | undefined {
  const m = /\{"error":\{"code":"ERR_UNSUPPORTED","message":("(?:[^"\\]|\\.)*")\}\}/.exec((e as Error).message)
  return m ? (JSON.parse(m[1]!) as string) : undefined
}

interface GcFigures {
  objects: number
  generateSeconds: number
  rooted: boolean
  /** The gc run, or why the store refuses it. */
  gc: { ms: number; cpuMs?: number; deletedObjects: number; deletedPaths: number; after: number } | { refused: string }
  pg: { rows: Record<string, number>; bytes: number }
  paths: number
}

async function gcStore(ctx: SharedBenchContext, servers: Servers): Promise<GcFigures> {
  const t0 = performance.now()
  const store = await servers.fresh()
  const env = { ...ctx.env, ...servers.env }
  const work = path.join(ctx.tmpRoot, 'shared-gc')
  try {
    // Roots where the store keeps them: half the paths rooted, half not.
    const rooted = await ctx.run(['roots', 'list', '--json', ...store.flags], 'pipe', env).then(
      () => true,
      (e: unknown) => {
        if (unsupported(e) === undefined) throw e
        return false
      },
    )
    const per = Math.ceil(GC_FILES / GC_PATHS)
    const trees = Array.from({ length: GC_PATHS }, (_, i) => path.join(work, `t${i}`))
    trees.forEach((t, i) => makeGcTree(t, `t${i}`, per))
    const paths = await fillGcStore(ctx, store, trees)
    if (rooted) for (const [i, p] of paths.slice(0, GC_PATHS / 2).entries()) await ctx.run(['roots', 'add', `bench-${i}`, p, ...store.flags], 'pipe', env)
    ctx.rmTree(work)
    const before = await servers.usage(store.bucket)
    const pg = await servers.pgRows(store.pgUrl)
    const objects = before.objects + (pg.rows.tvix_directories ?? 0) + (pg.rows.tvix_path_infos ?? 0)
    const generateSeconds = (performance.now() - t0) / 1000
    console.error(`[shared] gc store: ${before.objects} S3 objects, ${pg.rows.tvix_directories} directories, ${paths.length} paths in ${generateSeconds.toFixed(1)} s`)
    const unrooted = paths.slice(GC_PATHS / 2)
    const args = rooted ? ['gc', '--prune'] : ['gc', '--delete', ...unrooted]
    let gc: GcFigures['gc']
    try {
      const r = await ctx.run([...args, '--grace', '0', '--json', ...store.flags], 'pipe', env)
      const report = JSON.parse(r.stdout) as { paths: string[]; blobs: number; packs: number; directories: number }
      const after = await servers.usage(store.bucket)
      gc = { ms: r.ms, cpuMs: r.cpuMs, deletedObjects: report.blobs + report.packs + report.directories + report.paths.length, deletedPaths: report.paths.length, after: after.objects }
      ctx.check('shared: gc deleted the unrooted paths and nothing else', [...report.paths].sort().join() === [...unrooted].sort().join(), `deleted ${report.paths.join(', ')}; unrooted ${unrooted.join(', ')}`)
    } catch (e) {
      const why = unsupported(e)
      if (why === undefined) throw e
      gc = { refused: why }
    }
    return { objects, generateSeconds, rooted, gc, pg, paths: paths.length }
  } finally {
    ctx.rmTree(work)
    await store.drop()
  }
}

// ---------------------------------------------------------------- the bench

export async function benchShared(ctx: SharedBenchContext): Promise<SharedResult> {
  const t0 = performance.now()
  const result: SharedResult = { timeRows: [], storeRows: [], notes: [], servers: '', seconds: 0 }
  const servers = await openServers()
  if (typeof servers === 'string') {
    console.error(`[shared] skipped: ${servers}`)
    return { ...result, skipped: servers }
  }
  result.servers = process.env.TVIX_TEST_BACKENDS_FILE ? `the servers named in ${process.env.TVIX_TEST_BACKENDS_FILE}` : 'servers of its own (test/helpers/servers.ts)'
  const up = performance.now()
  try {
    await timedWays(ctx, servers, result)
    await twoReleases(ctx, servers, result)
    await gcRows(ctx, servers, result)
  } finally {
    await servers.stop()
  }
  result.notes.push(`shared section took ${((performance.now() - t0) / 1000).toFixed(1)} s (${((performance.now() - up) / 1000).toFixed(1)} s after the servers were up)`)
  result.seconds = (performance.now() - t0) / 1000
  return result
}

async function timedWays(ctx: SharedBenchContext, servers: Servers, result: SharedResult): Promise<void> {
  for (const name of ['many-small', 'few-large']) {
    let tree = ctx.trees[name]
    if (!tree) continue
    let bytes = ctx.stats[name]!.bytes
    if (QUICK && name === 'many-small') {
      tree = path.join(ctx.tmpRoot, 'inputs', `shared-many-small-${QUICK_SMALL}`)
      ctx.makeManySmall(tree, QUICK_SMALL)
      bytes = treeBytes(tree)
    }
    const mib = bytes / MiB
    const shown = tree === ctx.trees[name] ? name : `${name} (${QUICK_SMALL} files)`
    console.error(`[shared] import and export-nar ${shown} ×${ctx.reps}: ${WAYS.join(', ')} (fresh bucket + database or store each)`)
    const runs: Record<Way, WayRun[]> = { 'daemon on S3+PG': [], 'daemon on local': [], 'CLI on S3+PG': [] }
    for (let rep = 0; rep < ctx.reps; rep++) {
      // Rotate the order, so no way always runs first (or on another's leftovers).
      for (const way of [...WAYS.slice(rep % 3), ...WAYS.slice(0, rep % 3)]) runs[way].push(await oneWay(ctx, servers, way, tree, rep === 0))
    }
    const all = WAYS.flatMap((w) => runs[w])
    ctx.check(`shared: ${shown} gets one store path and one NAR every way`, new Set(all.map((r) => r.storePath)).size === 1 && new Set(all.map((r) => r.nar)).size === 1, WAYS.map((w) => `${w}: ${runs[w].map((r) => `${r.storePath} ${r.nar.slice(0, 12)}`).join(', ')}`).join('; '))

    for (const op of ['import', 'export'] as const) {
      const label = `${op === 'import' ? 'import' : 'export-nar'} ${shown}`
      const figures: [string, (s: Step) => number | undefined, boolean][] = [
        ['', (s) => s.ms, true],
        [', client CPU', (s) => s.clientCpuMs, true],
        [', daemon CPU', (s) => s.daemonCpuMs, false],
        [', client + daemon CPU', (s) => (s.clientCpuMs === undefined ? undefined : s.clientCpuMs + (s.daemonCpuMs ?? 0)), true],
      ]
      for (const [suffix, pick, withCli] of figures) {
        const samples = Object.fromEntries(WAYS.map((w) => [w, runs[w].flatMap((r) => (pick(r[op]) === undefined ? [] : [pick(r[op])!]))]))
        const [sd, ld, cli] = WAYS.map((w) => median(samples[w]!))
        result.timeRows.push({ figure: `${label}${suffix}`, cells: [fmt(sd, 's'), fmt(ld, 's'), ratioText(sd, ld), withCli ? fmt(cli, 's') : '–', withCli ? ratioText(sd, cli) : '–'], samples })
      }
    }

    // Counts: the same in every run; the first run's.
    const [daemon, cli] = [runs['daemon on S3+PG'][0]!, runs['CLI on S3+PG'][0]!]
    for (const op of ['import', 'export'] as const) {
      const per = (r: WayRun) => requestsOf(r[op].s3!) / mib
      result.storeRows.push({ figure: `S3 requests per MiB ${op === 'import' ? 'imported' : 'exported'}, ${shown}: through the daemon | CLI`, cells: [per(daemon).toFixed(1), per(cli).toFixed(1), ratioText(per(daemon), per(cli))] })
      result.notes.push(`S3 requests, ${op} ${shown} (${mib.toFixed(1)} MiB): daemon ${breakdown(daemon[op].s3!)}; CLI ${breakdown(cli[op].s3!)}`)
    }
    const stored = daemon.bucket!
    result.storeRows.push({ figure: `bytes stored in S3 vs imported, ${shown} (${stored.objects} objects)`, cells: [fmt(stored.bytes, 'bytes'), fmt(bytes, 'bytes'), ratioText(stored.bytes, bytes)] })
    const pg = daemon.pg!
    const rows = Object.values(pg.rows).reduce((a, n) => a + n, 0)
    result.storeRows.push({ figure: `PostgreSQL rows per path, ${shown} (1 path)`, cells: [String(rows), '–', '–'] })
    result.notes.push(`PostgreSQL, ${shown}: ${Object.entries(pg.rows).map(([t, n]) => `${t} ${n}`).join(', ')}; ${fmt(pg.bytes, 'bytes')} of tables and indexes`)
  }
}

async function twoReleases(ctx: SharedBenchContext, servers: Servers, result: SharedResult): Promise<void> {
  console.error('[shared] two releases of the space part\'s tree into one bucket + database')
  const base = path.join(ctx.tmpRoot, 'shared-releases')
  const [r1, r2] = [path.join(base, '1', 'app-1.0.0'), path.join(base, '2', 'app-1.0.1')]
  makeRelease1(r1)
  const edits = makeRelease2(r1, r2)
  const store = await servers.fresh()
  const env = { ...ctx.env, ...servers.env }
  try {
    const p1 = (await ctx.run(['import', r1, ...store.flags], 'pipe', env)).stdout.trim()
    const one = await servers.usage(store.bucket)
    const p2 = (await ctx.run(['import', r2, ...store.flags], 'pipe', env)).stdout.trim()
    const two = await servers.usage(store.bucket)
    const nar = await ctx.run(['export-nar', p2, ...store.flags], 'hash', env)
    const local = path.join(base, 'local')
    await ctx.run(['import', r2, '--store', local], 'pipe', env)
    const ref = await ctx.run(['export-nar', p2, '--store', local], 'hash', env)
    ctx.check('shared: release 2 exports from S3 + PostgreSQL as from a local store', p1 !== p2 && nar.sha256 === ref.sha256, `${nar.sha256} vs ${ref.sha256}`)
    const ratio = two.bytes / one.bytes
    result.storeRows.push({ figure: `bytes in the bucket: release 1 (${one.objects} objects)`, cells: [fmt(one.bytes, 'bytes'), '–', '–'] })
    result.storeRows.push({ figure: `bytes in the bucket: releases 1 + 2 (${two.objects} objects) vs release 1`, cells: [fmt(two.bytes, 'bytes'), fmt(one.bytes, 'bytes'), ratio.toFixed(3)], target: TWO_RELEASES.text, met: TWO_RELEASES.ok({ ours: two.bytes, ref: one.bytes, ratio }) })
    const pg = await servers.pgRows(store.pgUrl)
    result.notes.push(`two releases: release 2 = ${edits.edited} small files edited, ${edits.added} added, ${edits.deleted} deleted, ${edits.largeSpots} spots changed in the large files; PostgreSQL after both: ${Object.entries(pg.rows).map(([t, n]) => `${t} ${n}`).join(', ')}`)
  } finally {
    await store.drop()
    ctx.rmTree(base)
  }
}

async function gcRows(ctx: SharedBenchContext, servers: Servers, result: SharedResult): Promise<void> {
  console.error(`[shared] gc on a store of ~${GC_FILES} small objects in ${GC_PATHS} paths`)
  const g = await gcStore(ctx, servers)
  const rows = Object.values(g.pg.rows).reduce((a, n) => a + n, 0)
  result.storeRows.push({ figure: `PostgreSQL rows per path, gc store (${g.paths} paths of ${GC_FILES / GC_PATHS} files)`, cells: [(rows / g.paths).toFixed(1), '–', '–'] })
  const what = `${g.rooted ? 'gc --prune' : 'gc --delete of the unrooted paths'} on ${g.objects} objects (${g.paths} paths, half ${g.rooted ? 'unrooted' : 'named to delete'})`
  if ('refused' in g.gc) {
    result.storeRows.push({ figure: what, cells: ['gc not available on this store', '–', '–'] })
    result.notes.push(`gc refused: ${g.gc.refused}`)
  } else {
    result.storeRows.push({ figure: what, cells: [fmt(g.gc.ms, 's'), '–', '–'] })
    if (g.gc.cpuMs !== undefined) result.storeRows.push({ figure: '… its CPU (user+sys)', cells: [fmt(g.gc.cpuMs, 's'), '–', '–'] })
    result.storeRows.push({ figure: '… objects deleted (S3 objects, directories, paths)', cells: [String(g.gc.deletedObjects), '–', '–'] })
    result.notes.push(`gc: ${g.gc.deletedPaths} paths deleted; ${g.gc.after} S3 objects left`)
  }
  result.notes.push(`gc store: ${g.objects} objects (S3 objects, directories, paths) built in ${g.generateSeconds.toFixed(1)} s; roots ${g.rooted ? 'kept by the store' : 'not offered by the store (roots list refused)'}; PostgreSQL ${Object.entries(g.pg.rows).map(([t, n]) => `${t} ${n}`).join(', ')}, ${fmt(g.pg.bytes, 'bytes')}`)
}

// ---------------------------------------------------------------- printing

export function printShared(r: SharedResult): void {
  const q = QUICK ? '[quick] ' : ''
  if (r.skipped) {
    console.log(`${q}shared (S3 + PostgreSQL): skipped — ${r.skipped}`)
    console.log()
    return
  }
  console.log(`${q}S3 (Ceph radosgw) + PostgreSQL, ${r.servers}: import and export-nar through a daemon on --store postgres://… --blob-service-addr s3://…, through a daemon on a local store, and by the CLI on S3 + PostgreSQL`)
  console.log('median of BENCH_REPS runs, the three ways interleaved, each on a fresh bucket + database or store and a fresh daemon; client CPU from GNU time, daemon CPU from /proc over the command')
  console.log()
  console.log(textTable(['figure', 'daemon on S3+PG', 'daemon on local', 'ratio', 'CLI on S3+PG', 'ratio daemon/CLI', 'target', 'met?'], r.timeRows.map((x) => [x.figure, ...x.cells, '–', '–'])))
  console.log()
  console.log(`${q}what the S3 + PostgreSQL store sends and holds (counts from the first run; S3 requests as counted by the process talking to S3, the daemon or the CLI: TVIX_S3_STATS)`)
  console.log()
  console.log(textTable(['figure', 'S3 + PostgreSQL', 'reference', 'ratio', 'target', 'met?'], r.storeRows.map((x) => [x.figure, ...x.cells, x.target ?? '–', x.met === undefined ? '–' : x.met ? 'yes' : 'no'])))
  for (const n of r.notes) console.log(n)
  console.log()
}
