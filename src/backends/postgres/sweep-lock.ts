import type pg from 'pg'
import { TimeoutError } from '../../errors.js'
import type { Db } from './db.js'
import { SWEEP_LOCK } from './sessions.js'

/*
 * How anything deletes from the shared store (gc's marking and each of its
 * sweep rounds, verify --repair): in a short *exclusive section*, a
 * transaction on a connection of its own holding the sweep lock
 * exclusively, so no commit runs meanwhile, which advances the epoch
 * (advanceEpoch) before its first delete, so that every write session
 * that relied on something earlier re-checks it at its next commit
 * (sessions.ts). Commits get in between sections.
 *
 * A process stopped inside a section (SIGSTOP, a hung machine) holds
 * writers off only until PostgreSQL ends its silent connection
 * (idle_in_transaction_session_timeout; a live holder renews by a query
 * every HEARTBEAT_MS), which releases the lock.
 */

/** A lock holder whose connection stays silent this long is ended by PostgreSQL, releasing the lock. */
const LOCK_IDLE_TIMEOUT_MS = 60_000
const HEARTBEAT_MS = 10_000
/** How long a holder waits for the lock when not told (`--max-wait`'s default). */
const DEFAULT_MAX_WAIT_MS = 120_000
const LOCK_NOT_AVAILABLE = '55P03'

export interface LockWait {
  /** Give up (TimeoutError) after waiting this long. */
  maxWaitMs?: number
  /** Called once when the lock is not free at once. */
  onWait?: () => void
  /** Aborts the wait. */
  signal?: AbortSignal
  /** The TimeoutError's message, given the seconds waited. */
  gaveUp: (seconds: number) => string
}

/** A transaction-level advisory lock held on a connection of its own until end(). */
export interface HeldLock {
  readonly client: pg.PoolClient
  /** Commits (ok) or rolls back, and releases the connection. */
  end(ok: boolean): Promise<void>
}

/** Takes advisory lock `key` (exclusive) in a transaction of its own, waiting as `wait` says. */
export async function holdLock(db: Db, key: number, wait: LockWait): Promise<HeldLock> {
  const client = await db.connect()
  // A connection PostgreSQL ends (idle timeout) is an 'error' event too: unheard, it would end the process.
  const ignore = () => {}
  client.on('error', ignore)
  const cancel = () => {
    void db.query('select pg_cancel_backend($1::int)', [(client as unknown as { processID: number }).processID]).catch(() => {})
  }
  wait.signal?.addEventListener('abort', cancel, { once: true })
  let heartbeat: NodeJS.Timeout | undefined
  const release = (broken: boolean) => {
    if (heartbeat) clearInterval(heartbeat)
    client.off('error', ignore)
    // After a failure the connection may be in any state (ended by the server, mid-transaction): not reused.
    client.release(broken)
  }
  try {
    await client.query('begin')
    await client.query(`set local idle_in_transaction_session_timeout = ${LOCK_IDLE_TIMEOUT_MS}`)
    if (!(await client.query<{ ok: boolean }>('select pg_try_advisory_xact_lock($1) as ok', [key])).rows[0]!.ok) {
      wait.onWait?.()
      const from = Date.now()
      await client.query(`set local lock_timeout = ${Math.max(1, Math.round(wait.maxWaitMs ?? DEFAULT_MAX_WAIT_MS))}`)
      try {
        await client.query('select pg_advisory_xact_lock($1)', [key])
      } catch (e) {
        wait.signal?.throwIfAborted()
        if ((e as { code?: string }).code === LOCK_NOT_AVAILABLE) throw new TimeoutError(wait.gaveUp(Math.round((Date.now() - from) / 1000)))
        throw e
      }
      await client.query('set local lock_timeout = 0')
    }
  } catch (e) {
    wait.signal?.removeEventListener('abort', cancel)
    await client.query('rollback').catch(() => {})
    release(true)
    throw db.failure(e)
  }
  wait.signal?.removeEventListener('abort', cancel)
  heartbeat = setInterval(() => void client.query('select 1').catch(() => {}), HEARTBEAT_MS)
  heartbeat.unref()
  return {
    client,
    async end(ok) {
      try {
        await client.query(ok ? 'commit' : 'rollback')
      } catch (e) {
        release(true)
        if (ok) throw db.failure(e)
        return
      }
      release(false)
    },
  }
}

/** Runs `fn` with commits excluded (see the top); `fn` calls advanceEpoch before it deletes anything. */
export async function exclusively<T>(db: Db, wait: LockWait, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const held = await holdLock(db, SWEEP_LOCK, wait)
  let out: T
  try {
    out = await fn(held.client)
  } catch (e) {
    await held.end(false)
    throw db.failure(e)
  }
  await held.end(true)
  return out
}

/**
 * Moves the epoch: every session that noted an older one re-checks what
 * it relies on before it commits. A sequence is not transactional, so a
 * holder killed after this has still moved it.
 */
export async function advanceEpoch(c: pg.PoolClient): Promise<void> {
  await c.query(`select nextval('tvix_gc_epoch')`)
}
