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
}

/** S3 HEADs in flight while a commit checks what its session relies on. */
const CHECKS_IN_FLIGHT = 16

export class WriteGuard {
  private readonly sessions = new AsyncLocalStorage<Session>()
  private readonly inCommit = new AsyncLocalStorage<pg.PoolClient>()

  constructor(
    private readonly db: Db,
    /** Whether an S3 object is still there (a HEAD); undefined without S3. */
    private readonly s3Exists?: (key: string) => Promise<boolean>,
  ) {}

  /** Runs `fn` as one write session; nested calls join the outer one. */
  async session<T>(fn: () => Promise<T>): Promise<T> {
    if (this.sessions.getStore()) return fn()
    const row = (
      await this.db.query<{ free: boolean; epoch: string }>('select pg_try_advisory_xact_lock_shared($1) as free, (select last_value from tvix_gc_epoch)::text as epoch', [SWEEP_LOCK])
    ).rows[0]!
    return this.sessions.run({ epoch: row.free ? row.epoch : undefined, relied: new Set() }, fn)
  }

  /** The current session (if any) relies on this staying stored until it commits. */
  rely(r: Reliance): void {
    this.sessions.getStore()?.relied.add(r)
  }

  /**
   * Runs `fn` in a transaction with sweeps excluded, after checking (if a
   * sweep ran since the session last looked) that what the session relies
   * on is still stored. Nested commits share the outer transaction.
   */
  async commit<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const outer = this.inCommit.getStore()
    if (outer) return fn(outer)
    return this.db.commitTransaction(async (c) => {
      const epoch = (await c.query<{ epoch: string }>('select pg_advisory_xact_lock_shared($1), (select last_value from tvix_gc_epoch)::text as epoch', [SWEEP_LOCK])).rows[0]!.epoch
      const s = this.sessions.getStore()
      if (s && s.epoch !== epoch) {
        const gone = await this.missing(c, s.relied)
        if (gone) throw new ConflictError(`the store was garbage-collected while this write was under way (${gone} is gone); nothing was registered, run it again`)
        s.epoch = epoch
      }
      return this.inCommit.run(c, () => fn(c))
    })
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
    if (this.s3Exists) {
      await forEachLimit(keys, CHECKS_IN_FLIGHT, async (k) => {
        if (!lost && !(await this.s3Exists!(k))) lost = `S3 object ${k}`
      })
    }
    return lost
  }
}
