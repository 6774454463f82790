import os from 'node:os'
import type pg from 'pg'
import { UsageError } from '../../errors.js'
import type { TempRootKind, TempRoots } from '../../store/store.js'
import type { Db } from './db.js'
import type { WriteGuard } from './sessions.js'

/*
 * Temp roots on a shared store: what a daemon told one client connection is
 * stored (or what it sent) stays until the connection closes, as on the
 * local store, but kept in PostgreSQL under a *lease*: a row with an expiry
 * by the database's clock, renewed every TTL/3 by a timer. gc deletes
 * expired leases (their temp roots go with them) before it marks, so a
 * daemon killed -9 on another machine holds gc off at most one TTL.
 *
 * A root is recorded inside a commit (sweeps excluded) after the object was
 * found present, and in the same transaction the lease is renewed, or, if it
 * lapsed (a paused daemon: gc may have dropped it and swept), replaced by a
 * new one: a root is never added under a lease gc may already have ignored.
 */

/** Default lease lifetime; TVIX_LEASE_TTL (seconds) overrides it. */
export const DEFAULT_LEASE_TTL_MS = 60_000

export function leaseTtlMs(env = process.env): number {
  const given = env.TVIX_LEASE_TTL
  if (given === undefined || given === '') return DEFAULT_LEASE_TTL_MS
  const s = Number(given)
  // A typo must not silently become the default: a lease shorter or longer than meant changes how long gc waits.
  if (!Number.isFinite(s) || s <= 0) throw new UsageError(`TVIX_LEASE_TTL must be a number of seconds above 0, not ${JSON.stringify(given)}`)
  return s * 1000
}

const OWNER = () => `${os.hostname()}:${process.pid}`

const FOREIGN_KEY_VIOLATION = '23503'
/** PostgreSQL's SQLSTATE of a driver error, also once Db wrapped it into one line (as its cause). */
const pgCode = (e: unknown): string | undefined => (e as { code?: string }).code ?? (e as { cause?: { code?: string } }).cause?.code

export class PgTempRoots implements TempRoots {
  private lease: string | undefined
  private readonly held = new Set<string>()
  private timer: NodeJS.Timeout | undefined
  private released = false

  constructor(
    private readonly db: Db,
    private readonly guard: WriteGuard,
    private readonly ttlMs: number,
  ) {}

  async holdIf(kind: TempRootKind, name: string, present: () => Promise<boolean>): Promise<boolean> {
    const line = `${kind} ${name}`
    if (this.held.has(line) && this.lease) return present()
    for (let attempt = 1; ; attempt++) {
      try {
        let recorded = false
        const found = await this.guard.commit(async (c) => {
          if (!(await present())) return false
          if (this.released) return true
          const lease = await this.renewOrTake(c)
          await c.query('insert into tvix_temp_roots (lease, kind, name) values ($1, $2, $3) on conflict do nothing', [lease, kind, name])
          recorded = true
          return true
        })
        // Only once committed: the commit can still fail after this callback (it then takes objects off a sweep's doomed list), and a root
        // marked held but rolled back would let the next holdIf skip recording it.
        if (recorded) this.held.add(line)
        return found
      } catch (e) {
        // The lease went away under this root (released, or dropped as expired, meanwhile): nothing was recorded; record it under a new one.
        if (attempt < 3 && pgCode(e) === FOREIGN_KEY_VIOLATION) {
          this.lease = undefined
          this.held.clear()
          continue
        }
        throw e
      }
    }
  }

  /** The lease, renewed in the caller's transaction; a new one (and an empty `held`) if it lapsed. */
  private async renewOrTake(c: pg.PoolClient): Promise<string> {
    const ttl = `${this.ttlMs} milliseconds`
    // The lease this transaction renews (and row-locks): another call may replace this.lease meanwhile.
    const current = this.lease
    if (current) {
      // clock_timestamp(), not now(): a transaction that waited behind a sweep must not judge by when it began.
      const r = await c.query('update tvix_leases set expires_at = clock_timestamp() + $2::interval where id = $1 and expires_at > clock_timestamp()', [current, ttl])
      if (r.rowCount === 1) return current
      this.held.clear()
    }
    const id = (await c.query<{ id: string }>(`insert into tvix_leases (owner, kind, expires_at) values ($1, 'temp-roots', clock_timestamp() + $2::interval) returning id::text`, [OWNER(), ttl])).rows[0]!.id
    this.lease = id
    this.heartbeat()
    return id
  }

  /** Renews the lease every TTL/3 until release; a renewal that finds it lapsed forgets it (the next root takes a new one). */
  private heartbeat(): void {
    if (this.timer) return
    this.timer = setInterval(() => {
      const lease = this.lease
      if (!lease) return
      this.db.query('update tvix_leases set expires_at = now() + $2::interval where id = $1 and expires_at > now()', [lease, `${this.ttlMs} milliseconds`]).then(
        (r) => {
          if (r.rowCount === 0 && this.lease === lease) {
            this.lease = undefined
            this.held.clear()
          }
        },
        () => {}, // the database is away: the lease may lapse, and the next root takes a new one
      )
    }, Math.max(1, Math.floor(this.ttlMs / 3)))
    this.timer.unref()
  }

  release(): void {
    this.released = true
    if (this.timer) clearInterval(this.timer)
    const lease = this.lease
    this.lease = undefined
    if (lease) this.db.query('delete from tvix_leases where id = $1', [lease]).catch(() => {}) // else it expires
  }
}
