import { AsyncLocalStorage } from 'node:async_hooks'
import type pg from 'pg'
import { ConflictError } from '../../errors.js'
import { forEachLimit } from '../../util/pool.js'
import type { Db } from './db.js'

/*
 * Write sessions and commits on a store shared through PostgreSQL (and S3),
 * the local store's protocol (locks.ts) with the database as the referee:
 *
 * - gc sweeps holding an exclusive transaction-level advisory lock (SWEEP);
 *   every commit (Directory puts, PathInfo put, a root, a temp root, a chunk
 *   list's publication in S3) runs in a transaction holding it shared. So a
 *   commit and a sweep exclude each other, and a gc that dies (its connection
 *   closes) or stalls (idle_in_transaction_session_timeout ends it) lets
 *   writers go on.
 * - Before deleting anything, gc advances the tvix_gc_epoch sequence
 *   (sequences are not transactional: a gc killed half-way has still moved it).
 * - A session reads the epoch when it starts; if a sweep holds the lock just
 *   then, it knows none (`undefined`), as if one had run. It records what it
 *   relies on: objects found stored, objects it wrote. A commit that sees
 *   another epoch first checks each is still stored, else fails with
 *   ConflictError ("garbage-collected while this write was under way") and
 *   registers nothing; the CLI then runs again, a daemon answers ABORTED.
 *
 * - gc deletes S3 objects in rounds (gc.ts), each an exclusive section of
 *   its own (sweep-lock.ts), and commits run in between. What the marking
 *   doomed and no round has deleted yet is listed in tvix_gc_doomed. A
 *   commit during such a sweep takes out of that list every object its
 *   session (or the commit itself: a temp root's presence check) relies on,
 *   a chunk list with its chunks, in its own transaction: a round deletes
 *   only what is still listed when it holds the lock, so an object a commit
 *   made needed again is never deleted by that sweep. An object relied on
 *   before a round deleted it is caught by the epoch, which every round
 *   moves before deleting: the commit sees a new epoch, finds it gone, fails.
 *
 * Sessions hold no lock while they read input: a stalled writer blocks nobody.
 */

/** Any fixed number: the advisory lock key shared by every writer and gc of a tvix-store database. */
export const SWEEP_LOCK = 0x7476_6763

/** What a session relies on, one string each: `s3 <key>`, `dir <hex>`, `path <hex>`. */
export type Reliance = string
export const relyS3 = (key: string): Reliance => `s3 ${key}`
export const relyDir = (digest: Uint8Array): Reliance => `dir ${Buffer.from(digest).toString('hex')}`
export const relyPath = (digest: Uint8Array): Reliance => `path ${Buffer.from(digest).toString('hex')}`

interface Session {
  /** The epoch in which everything in `relied` was last known to be stored; undefined: unknown (a sweep was running). */
  epoch: string | undefined
  relied: Set<Reliance>
  /** The sweep (tvix_gc_doomed's `sweep`) whose doomed list `kept` was last checked against, and the objects found off it. */
  keptIn?: string
  kept: Set<Reliance>
}

/** A commit under way: its transaction, and what it relied on while it ran (outside any session too). */
interface Commit {
  client: pg.PoolClient
  relied: Set<Reliance>
}

/** How a commit sees S3: whether an object is still there (a HEAD), and the chunk keys of a chunk list (undefined: gone). */
export interface S3View {
  exists(key: string): Promise<boolean>
  chunksOf(listKey: string): Promise<string[] | undefined>
}

/** S3 HEADs in flight while a commit checks what its session relies on. */
const CHECKS_IN_FLIGHT = 16

export class WriteGuard {
  private readonly sessions = new AsyncLocalStorage<Session>()
  private readonly inCommit = new AsyncLocalStorage<Commit>()

  constructor(
    private readonly db: Db,
    /** Undefined without S3. */
    private readonly s3?: S3View,
  ) {}

  /** Runs `fn` as one write session; nested calls join the outer one. */
  async session<T>(fn: () => Promise<T>): Promise<T> {
    if (this.sessions.getStore()) return fn()
    const row = (
      await this.db.query<{ free: boolean; epoch: string }>('select pg_try_advisory_xact_lock_shared($1) as free, (select last_value from tvix_gc_epoch)::text as epoch', [SWEEP_LOCK])
    ).rows[0]!
    return this.sessions.run({ epoch: row.free ? row.epoch : undefined, relied: new Set(), kept: new Set() }, fn)
  }

  /** The current session and commit (if any) rely on this staying stored until they commit. */
  rely(r: Reliance): void {
    this.sessions.getStore()?.relied.add(r)
    this.inCommit.getStore()?.relied.add(r)
  }

  /**
   * Runs `fn` in a transaction with sweeps excluded, after checking (if a
   * sweep ran since the session last looked) that what the session relies
   * on is still stored, and, if a sweep is under way, takes what it relies
   * on off the sweep's doomed list. Nested commits share the outer one.
   */
  async commit<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const outer = this.inCommit.getStore()
    if (outer) return fn(outer.client)
    const s = this.sessions.getStore()
    let kept: { sweep: string; relied: Reliance[] } | undefined
    const out = await this.db.commitTransaction(async (c) => {
      const row = (
        await c.query<{ epoch: string; sweep: string | null }>(
          'select pg_advisory_xact_lock_shared($1), (select last_value from tvix_gc_epoch)::text as epoch, (select sweep from tvix_gc_doomed limit 1)::text as sweep',
          [SWEEP_LOCK],
        )
      ).rows[0]!
      if (s && s.epoch !== row.epoch) {
        const gone = await this.missing(c, s.relied)
        if (gone) throw this.conflict(gone)
        s.epoch = row.epoch
      }
      const commit: Commit = { client: c, relied: new Set() }
      const result = await this.inCommit.run(commit, () => fn(c))
      if (row.sweep !== null) kept = { sweep: row.sweep, relied: await this.keep(c, row.sweep, s, commit.relied) }
      return result
    })
    // Only once committed: a rolled-back commit took nothing off the list.
    if (s && kept) {
      if (s.keptIn !== kept.sweep) s.kept.clear()
      s.keptIn = kept.sweep
      for (const r of kept.relied) s.kept.add(r)
    }
    return out
  }

  private conflict(gone: string): ConflictError {
    return new ConflictError(`the store was garbage-collected while this write was under way (${gone} is gone); nothing was registered, run it again`)
  }

  /**
   * Takes the S3 objects the session and this commit rely on off the doomed
   * list of the sweep under way (a chunk list with its chunks), so that no
   * round of it deletes them. Runs inside the commit: no round runs
   * between this and the commit becoming visible.
   */
  private async keep(c: pg.PoolClient, sweep: string, s: Session | undefined, relied: Set<Reliance>): Promise<Reliance[]> {
    const known = s?.keptIn === sweep ? s.kept : new Set<Reliance>()
    const todo = [...new Set([...(s?.relied ?? []), ...relied])].filter((r) => r.startsWith('s3 ') && !known.has(r))
    if (todo.length === 0) return []
    const keys = todo.map((r) => r.slice(3))
    // A doomed chunk list goes with its chunks (still stored: a round that deleted it would have taken it off the list, unless a gc died between the two).
    const lists = keys.filter((k) => k.startsWith('blobs/'))
    const doomedLists = lists.length === 0 ? [] : (await c.query<{ key: string }>('select key from tvix_gc_doomed where key = any($1::text[])', [lists])).rows.map((r) => r.key)
    for (const list of doomedLists) {
      const chunks = await this.s3?.chunksOf(list)
      if (!chunks) throw this.conflict(`S3 object ${list}`)
      keys.push(...chunks)
    }
    // One statement, rows locked in key order: commits taking overlapping keys queue, never deadlock.
    await c.query('delete from tvix_gc_doomed where key in (select key from tvix_gc_doomed where key = any($1::text[]) order by key for update)', [keys])
    return todo
  }

  /** The first relied-on object no longer stored, or undefined. */
  private async missing(c: pg.PoolClient, relied: Set<Reliance>): Promise<string | undefined> {
    const dirs: Buffer[] = []
    const paths: Buffer[] = []
    const keys: string[] = []
    for (const r of relied) {
      const [kind, name] = [r.slice(0, r.indexOf(' ')), r.slice(r.indexOf(' ') + 1)]
      if (kind === 'dir') dirs.push(Buffer.from(name, 'hex'))
      else if (kind === 'path') paths.push(Buffer.from(name, 'hex'))
      else keys.push(name)
    }
    for (const [table, digests, what] of [['tvix_directories', dirs, 'directory'], ['tvix_path_infos', paths, 'path info']] as const) {
      if (digests.length === 0) continue
      const found = new Set((await c.query<{ digest: Buffer }>(`select digest from ${table} where digest = any($1::bytea[])`, [digests])).rows.map((r) => r.digest.toString('hex')))
      const lost = digests.find((d) => !found.has(d.toString('hex')))
      if (lost) return `${what} ${lost.toString('hex')}`
    }
    let lost: string | undefined
    if (this.s3) {
      await forEachLimit(keys, CHECKS_IN_FLIGHT, async (k) => {
        if (!lost && !(await this.s3!.exists(k))) lost = `S3 object ${k}`
      })
    }
    return lost
  }
}
