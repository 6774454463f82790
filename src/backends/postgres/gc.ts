import type pg from 'pg'
import { toHex } from '../../castore/digest.js'
import { decodeDirectory } from '../../castore/proto.js'
import { NotFoundError, StillAliveError } from '../../errors.js'
import type { GcOptions, GcReport } from '../../store/capabilities.js'
import * as nixbase32 from '../../store/nixbase32.js'
import type { PathInfo } from '../../store/path-info.js'
import { decodePathInfo } from '../../store/proto.js'
import { absolute, hashPart } from '../../store/store-path.js'
import { secondsSince } from '../../util/elapsed.js'
import { forEachLimit } from '../../util/pool.js'
import { decodeChunkList } from '../s3/chunk-codec.js'
import type { ListedObject, S3Client } from '../s3/client.js'
import type { Db } from './db.js'
import { type LockWait, advanceEpoch, exclusively, holdLock } from './sweep-lock.js'

/*
 * gc on the S3 + PostgreSQL store, mirroring the local store's. One gc
 * runs at a time (GC_RUN_LOCK, held from its listing to its last round).
 *
 * 1. Without holding writers off: list the bucket's chunks and chunk lists
 *    (with their ages by S3's clock) and warm the marks (Directories
 *    decoded, chunk lists read), so little is left for phase 2.
 * 2. In one exclusive section (sweep-lock.ts: commits held off): drop
 *    expired leases (their temp roots go too), list the chunk lists again
 *    (a list published since is a root), and mark by queries: PathInfos
 *    that stay (all, or with --prune the closure of the GC roots, temp
 *    roots and recent paths through tvix_path_references), the Directory
 *    closure of their root nodes, of temp roots and of young Directories
 *    (tvix_directory_children), the blobs of those, and the chunks of kept
 *    chunk lists. Then advance the epoch, delete the dead PathInfo and
 *    Directory rows and list the dead S3 objects in tvix_gc_doomed, all in
 *    that section's transaction.
 * 3. Delete the doomed S3 objects in rounds of one DeleteObjects (1000
 *    keys), chunk lists before chunks, each round an exclusive section of
 *    its own that advances the epoch and deletes only what is still on the
 *    doomed list: a commit between rounds that relies on a doomed object
 *    takes it off (sessions.ts), and one that relied on an object a round
 *    deleted sees the epoch moved and fails. So writers wait for one round
 *    at a time, never for the whole sweep.
 *
 * A gc killed at any point leaves every remaining object whole with all
 * it refers to: rows go (with the marking, atomically) before the objects
 * they name, a list before its chunks; the next gc replaces the doomed
 * list it left. A chunk or chunk list not in the phase-1 listing is never
 * deleted (it is newer than the listing); one written within --grace is
 * kept and keeps what it refers to.
 */

/** Objects a sweep round deletes: one DeleteObjects (at most 1000 keys), so a round holds writers off for one request. */
const DELETE_BATCH = 1000
const READS_IN_FLIGHT = 16
/** Digests per `= any($1)` query. */
const QUERY_BATCH = 5000

export interface SharedGcParts {
  db: Db
  s3: S3Client
  storeDir: string
}

type Run = <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => Promise<R[]>

interface StoredPath {
  size: number
  young: boolean
  recent: boolean
  info?: PathInfo
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')
const unhex = (h: string) => Buffer.from(h, 'hex')

/** What survives phase 1 into phase 2: Directories decoded (their file digests) and chunk lists read, both immutable. */
class Memo {
  readonly dirFiles = new Map<string, string[]>()
  /** A list's chunks; null: unreadable (corrupt), so no chunk may go this run. */
  readonly lists = new Map<string, string[] | null>()

  constructor(readonly s3: S3Client) {}

  async loadDirs(run: Run, digests: string[]): Promise<void> {
    const todo = digests.filter((d) => !this.dirFiles.has(d))
    for (let i = 0; i < todo.length; i += QUERY_BATCH) {
      const rows = await run<{ digest: Buffer; data: Buffer }>('select digest, data from tvix_directories where digest = any($1::bytea[])', [todo.slice(i, i + QUERY_BATCH).map(unhex)])
      for (const r of rows) {
        let files: string[] = []
        try {
          files = decodeDirectory(r.data).files.map((f) => hex(f.digest))
        } catch {
          // corrupt: verify's to report; it keeps nothing alive
        }
        this.dirFiles.set(r.digest.toString('hex'), files)
      }
    }
  }

  async loadLists(blobs: Iterable<string>): Promise<void> {
    const todo = [...blobs].filter((b) => !this.lists.has(b))
    await forEachLimit(todo, READS_IN_FLIGHT, async (b) => {
      const obj = await this.s3.get(`blobs/${b}`)
      try {
        this.lists.set(b, obj ? decodeChunkList(obj.body, unhex(b)).map((c) => hex(c.digest)) : [])
      } catch {
        this.lists.set(b, null)
      }
    })
  }
}

async function listed(s3: S3Client, under: string): Promise<Map<string, ListedObject>> {
  const out = new Map<string, ListedObject>()
  for await (const o of s3.objects(under)) {
    const name = o.key.slice(under.length)
    if (/^[0-9a-f]{64}$/.test(name)) out.set(name, o)
  }
  return out
}

interface Marks {
  paths: Map<string, StoredPath>
  livePaths: Set<string>
  /** Directories and blobs reachable from what stays, then also from young objects. */
  oldDirs: Set<string>
  dirs: Set<string>
  oldBlobs: Set<string>
  blobs: Set<string>
}

/** Marks what stays, by queries; `lists` the chunk lists listed (young ones are roots). */
async function mark(run: Run, memo: Memo, opts: GcOptions, storeDir: string, lists: Map<string, ListedObject>): Promise<Marks> {
  const grace = `${Math.max(0, opts.graceMs)} milliseconds`
  const olderThan = `${opts.olderThanMs ?? 0} milliseconds`
  const paths = new Map<string, StoredPath>()
  for (const r of await run<{ digest: Buffer; data: Buffer; size: number; young: boolean; recent: boolean }>(
    `select digest, data, length(data) as size, registered_at > now() - $1::interval as young, registered_at > now() - $2::interval as recent from tvix_path_infos`,
    [grace, olderThan],
  )) {
    let info: PathInfo | undefined
    try {
      info = decodePathInfo(r.data)
    } catch {
      info = undefined // corrupt: kept, and left to verify
    }
    paths.set(r.digest.toString('hex'), { size: r.size, young: r.young, recent: opts.olderThanMs !== undefined && r.recent, info })
  }
  const temp = await run<{ kind: string; name: string }>('select kind, name from tvix_temp_roots')
  const closure = async (start: string[]) =>
    new Set(
      (
        await run<{ d: Buffer }>(
          `with recursive live(d) as (select unnest($1::bytea[]) union select r.reference from tvix_path_references r join live on r.referrer = live.d) select d from live`,
          [start.map(unhex)],
        )
      ).map((r) => r.d.toString('hex')),
    )
  const livePaths = await livePathSet(run, paths, temp, closure, opts, storeDir)

  const dirRoots: string[] = temp.filter((t) => t.kind === 'dir').map((t) => t.name)
  const blobRoots: string[] = temp.filter((t) => t.kind === 'blob').map((t) => t.name)
  for (const n of livePaths) {
    const node = paths.get(n)?.info?.node
    if (node?.kind === 'directory') dirRoots.push(hex(node.digest))
    else if (node?.kind === 'file') blobRoots.push(hex(node.digest))
  }
  const dirClosure = async (start: string[]) => {
    const rows = await run<{ d: Buffer }>(
      `with recursive c(d) as (select unnest($1::bytea[]) union select ch.child from tvix_directory_children ch join c on ch.parent = c.d) select d from c`,
      [start.map(unhex)],
    )
    const out = rows.map((r) => r.d.toString('hex'))
    await memo.loadDirs(run, out)
    return out
  }
  const blobsOf = (dirs: Iterable<string>, extra: string[]) => {
    const out = new Set(extra)
    for (const d of dirs) for (const f of memo.dirFiles.get(d) ?? []) out.add(f)
    return out
  }
  const oldDirs = new Set(await dirClosure(dirRoots))
  const oldBlobs = blobsOf(oldDirs, blobRoots)
  // Young Directories and chunk lists (written within --grace) are roots too.
  const youngDirs = (await run<{ digest: Buffer }>('select digest from tvix_directories where written_at > now() - $1::interval', [grace])).map((r) => r.digest.toString('hex'))
  const dirs = new Set([...oldDirs, ...(await dirClosure(youngDirs))])
  const youngLists = [...lists.values()].filter((o) => o.ageMs < opts.graceMs).map((o) => o.key.slice('blobs/'.length))
  const blobs = blobsOf(dirs, [...blobRoots, ...youngLists])
  return { paths, livePaths, oldDirs, dirs, oldBlobs, blobs }
}

/** Store path digests (hex) of the PathInfos that stay. */
async function livePathSet(
  run: Run,
  paths: Map<string, StoredPath>,
  temp: Array<{ kind: string; name: string }>,
  closure: (start: string[]) => Promise<Set<string>>,
  opts: GcOptions,
  storeDir: string,
): Promise<Set<string>> {
  const all = new Set(paths.keys())
  const shown = (n: string) => {
    const name = paths.get(n)?.info?.node.name
    return name ? `${storeDir}/${Buffer.from(name).toString('utf8')}` : n
  }
  const roots = await run<{ name: string; digest: Buffer }>('select name, digest from tvix_gc_roots order by name')
  if (opts.deletePaths) {
    const doomed = new Set(opts.deletePaths.map((p) => hex(p.digest)))
    const rooted = new Map<string, string>()
    for (const r of opts.ignoreRoots ? [] : roots) for (const n of await closure([r.digest.toString('hex')])) if (!rooted.has(n)) rooted.set(n, r.name)
    for (const p of opts.deletePaths) {
      const n = hex(p.digest)
      const name = paths.get(n)?.info?.node.name
      const at = absolute(p, storeDir)
      if (!name || Buffer.from(name).toString('utf8') !== `${hashPart(p)}-${p.name}`) throw new NotFoundError(`cannot delete path '${at}': it is not in the store`)
      if (rooted.has(n)) throw new StillAliveError(`cannot delete path '${at}' since it is still alive: GC root '${rooted.get(n)}' needs it`)
      const by = (await run<{ referrer: Buffer }>('select referrer from tvix_path_references where reference = $1', [unhex(n)])).map((r) => r.referrer.toString('hex')).find((r) => !doomed.has(r))
      if (by) throw new StillAliveError(`cannot delete path '${at}' since it is still alive: '${shown(by)}' refers to it`)
    }
    return new Set([...all].filter((n) => !doomed.has(n)))
  }
  if (!opts.prune) return all
  const start = roots.map((r) => r.digest.toString('hex'))
  for (const t of temp) if (t.kind === 'pathinfo') start.push(hex(nixbase32.decode(t.name)))
  // Kept: recent ones (an upload may still be under way), those inside the retention window, and undecodable ones (verify's job).
  for (const [n, p] of paths) if (!p.info || p.young || p.recent) start.push(n)
  return closure(start)
}

/** Chunks that stay: those of the blobs that stay (a one-chunk blob is its chunk) and of every chunk list kept. */
async function liveChunks(memo: Memo, blobs: Set<string>, lists: Map<string, ListedObject>): Promise<Set<string> | undefined> {
  const kept = [...blobs].filter((b) => lists.has(b))
  await memo.loadLists(kept)
  const out = new Set(blobs)
  for (const b of kept) {
    const chunks = memo.lists.get(b)
    if (chunks === null) return undefined
    for (const c of chunks ?? []) out.add(c)
  }
  return out
}

/** The advisory lock key one gc run holds from its listing to its last round: gc runs queue, each lists what the last left. */
const GC_RUN_LOCK = 0x7476_6772

/**
 * Mark and sweep the shared store (see the comment at the top). Commits
 * wait while the marking and each round run; gc gives up (TimeoutError)
 * if commits (or another gc) hold it off longer than `maxWaitMs`.
 */
export async function collectSharedGarbage({ db, s3, storeDir }: SharedGcParts, opts: GcOptions): Promise<GcReport> {
  const started = performance.now()
  const waitFor = (what: string, outcome: () => string, say = true): LockWait => ({
    maxWaitMs: opts.maxWaitMs,
    signal: opts.signal,
    // Said before the marking, not before each round: a round waits for a commit or two, routinely.
    onWait: say ? () => opts.onWait?.([]) : undefined,
    gaveUp: (s) => `gave up after waiting ${s} s for ${what} to end (stopped or hung?); ${outcome()}`,
  })
  const nothing = () => 'nothing was deleted'
  const gcRun = await holdLock(db, GC_RUN_LOCK, waitFor('another gc', nothing))
  let ok = false
  try {
    const memo = new Memo(s3)
    // Phase 1: list and warm the marks, holding no writer off.
    const chunks = await listed(s3, 'chunks/')
    const firstLists = await listed(s3, 'blobs/')
    const poolRun: Run = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => (await db.query<R>(text, values)).rows
    const warm = await mark(poolRun, memo, opts, storeDir, firstLists)
    await liveChunks(memo, warm.blobs, firstLists)

    // Phase 2, commits held off: mark, delete the rows, list the S3 objects doomed.
    let heldOff = 0
    const plan = await exclusively(db, waitFor('commits', nothing), async (c) => {
      const heldFrom = performance.now()
      const out = await markAndDeleteRows(c, memo, opts, storeDir, chunks, firstLists)
      heldOff += secondsSince(heldFrom)
      return out
    })
    const { report, doomed } = plan
    let done = report.directories + report.paths.length
    const total = done + doomed.length
    if (!opts.dryRun && total > 0) opts.onProgress?.(done, total)

    // Phase 3: the S3 objects in rounds, commits getting in between (sessions.ts says why that is safe).
    const deleted = { chunks: 0, lists: 0, bytes: 0 }
    const sizes = new Map(doomed.map((d) => [d.key, d.size]))
    const gaveUpMidway = () =>
      `deleted ${report.paths.length} paths, ${report.directories} directories and ${deleted.chunks + deleted.lists} of ${doomed.length} S3 objects; the next gc deletes the rest`
    for (let i = 0; i < doomed.length; i += DELETE_BATCH) {
      const batch = doomed.slice(i, i + DELETE_BATCH).map((d) => d.key)
      // Still this gc's turn? (A paused gc that PostgreSQL ended must not go on.)
      await gcRun.client.query('select 1').catch((e: unknown) => {
        throw db.failure(e)
      })
      await exclusively(db, waitFor('commits', gaveUpMidway, false), async (c) => {
        const heldFrom = performance.now()
        await advanceEpoch(c)
        // What no commit took off the list since; `returning` so that no key is counted by two runs.
        const gone = (await c.query<{ key: string }>('delete from tvix_gc_doomed where key = any($1::text[]) returning key', [batch])).rows.map((r) => r.key)
        if (gone.length > 0) await s3.deleteMany(gone)
        for (const k of gone) {
          if (k.startsWith('blobs/')) deleted.lists++
          else deleted.chunks++
          deleted.bytes += sizes.get(k) ?? 0
        }
        heldOff += secondsSince(heldFrom)
      })
      opts.onProgress?.((done += batch.length), total)
    }
    if (!opts.dryRun) {
      // Counts of what this run deleted: not what commits took back meanwhile.
      report.bytes -= doomed.reduce((n, d) => n + d.size, 0) - deleted.bytes
      report.blobs = deleted.chunks
      report.packs = deleted.lists
    }
    report.seconds = secondsSince(started)
    report.writersHeldOffSeconds = Math.round(heldOff * 1000) / 1000
    ok = true
    return report
  } finally {
    await gcRun.end(ok)
  }
}

interface Plan {
  report: GcReport
  /** S3 objects to delete in rounds (lists before chunks), each with its size. */
  doomed: Array<{ key: string; size: number }>
}

/**
 * With commits held off: marks, and (unless a dry run) deletes the dead
 * rows and lists the dead S3 objects in tvix_gc_doomed, replacing what a
 * gc that died left there.
 */
async function markAndDeleteRows(
  c: pg.PoolClient,
  memo: Memo,
  opts: GcOptions,
  storeDir: string,
  chunks: Map<string, ListedObject>,
  firstLists: Map<string, ListedObject>,
): Promise<Plan> {
  const run: Run = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => (await c.query<R>(text, values)).rows
  if (!opts.dryRun) await run('delete from tvix_leases where expires_at < now()')
  const lists = await listed(memo.s3, 'blobs/')
  for (const [b, o] of lists) if (!firstLists.has(b)) o.ageMs = -Infinity // new since the first listing: young whatever --grace says
  const m = await mark(run, memo, opts, storeDir, lists)
  const live = await liveChunks(memo, m.blobs, lists)
  const oldLive = await liveChunks(memo, m.oldBlobs, lists)

  const deadPaths = opts.prune || opts.deletePaths ? [...m.paths.keys()].filter((n) => !m.livePaths.has(n)) : []
  const dirRows = await run<{ digest: Buffer; size: number; young: boolean }>('select digest, length(data) as size, written_at > now() - $1::interval as young from tvix_directories', [`${Math.max(0, opts.graceMs)} milliseconds`])
  const deadDirs = dirRows.filter((r) => !m.dirs.has(r.digest.toString('hex')) && !r.young)
  const young = (o: ListedObject) => o.ageMs < opts.graceMs
  const deadLists = [...lists.entries()].filter(([b, o]) => !m.blobs.has(b) && !young(o))
  const deadChunks = live ? [...chunks.entries()].filter(([c, o]) => !live.has(c) && !young(o)) : []
  const keptYoung =
    dirRows.filter((r) => r.young && !m.oldDirs.has(r.digest.toString('hex'))).length +
    [...lists.entries()].filter(([b, o]) => young(o) && !m.oldBlobs.has(b)).length +
    [...chunks.entries()].filter(([c, o]) => young(o) && !(oldLive ?? live)?.has(c)).length

  const doomed = [...deadLists.map(([b, o]) => ({ key: `blobs/${b}`, size: o.size })), ...deadChunks.map(([c, o]) => ({ key: `chunks/${c}`, size: o.size }))]
  const report: GcReport = {
    dryRun: !!opts.dryRun,
    paths: deadPaths.map((n) => {
      const name = m.paths.get(n)?.info?.node.name
      return name ? `${storeDir}/${Buffer.from(name).toString('utf8')}` : n
    }),
    blobs: deadChunks.length,
    packs: deadLists.length,
    directories: deadDirs.length,
    tempFiles: 0,
    bytes: deadPaths.reduce((n, p) => n + m.paths.get(p)!.size, 0) + deadDirs.reduce((n, d) => n + d.size, 0) + doomed.reduce((n, d) => n + d.size, 0),
    keptYoung,
    seconds: 0,
    writersHeldOffSeconds: 0,
  }
  if (opts.dryRun) return { report, doomed: [] }
  // What a gc that died left: marked afresh just now.
  await run('delete from tvix_gc_doomed')
  if (deadPaths.length + deadDirs.length + doomed.length === 0) return { report, doomed }
  // First the epoch (sessions that relied on a row re-check it), then rows, a PathInfo before its Directories.
  await advanceEpoch(c)
  const sweep = (await run<{ epoch: string }>(`select last_value::text as epoch from tvix_gc_epoch`))[0]!.epoch
  for (let i = 0; i < deadPaths.length; i += QUERY_BATCH) {
    const part = deadPaths.slice(i, i + QUERY_BATCH).map(unhex)
    await run('delete from tvix_path_references where referrer = any($1::bytea[])', [part])
    await run('delete from tvix_path_infos where digest = any($1::bytea[])', [part])
  }
  for (let i = 0; i < deadDirs.length; i += QUERY_BATCH) {
    const part = deadDirs.slice(i, i + QUERY_BATCH).map((d) => d.digest)
    await run('delete from tvix_directory_children where parent = any($1::bytea[])', [part])
    await run('delete from tvix_directories where digest = any($1::bytea[])', [part])
  }
  for (let i = 0; i < doomed.length; i += QUERY_BATCH) {
    await run('insert into tvix_gc_doomed (key, sweep) select unnest($1::text[]), $2', [doomed.slice(i, i + QUERY_BATCH).map((d) => d.key), sweep])
  }
  return { report, doomed }
}
