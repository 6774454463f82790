import pg from 'pg'
import { BackendError, StoreError } from '../../errors.js'
import { migrate } from './schema.js'

/*
 * The connection pool, and failures as one clear line: a database that is
 * down or refuses us is a BackendError naming it, not a stack of driver
 * internals.
 */

/** Connections per process: a daemon's concurrent calls, each one query at a time. */
const CONNECTIONS = 16

export class Db {
  /**
   * Connections for commits (sessions.ts), apart from the main pool: a
   * commit holds one while its checks query through the main pool, so
   * commits waiting for a sweep can never starve those checks (or gc) of
   * connections.
   */
  private commitPool: pg.Pool | undefined

  private constructor(
    private readonly pool: pg.Pool,
    /** How messages name the database. */
    readonly where: string,
    private readonly connectionString: string,
  ) {}

  /** Connects, migrates the schema, and keeps the pool. */
  static async open(connectionString: string): Promise<Db> {
    const pool = new pg.Pool({ connectionString, max: CONNECTIONS })
    // An idle connection the server dropped is an error on the pool, not a crash: the next query reconnects.
    pool.on('error', () => {})
    const u = new URL(connectionString)
    const db = new Db(pool, `PostgreSQL ${u.host ? u.host : `at ${process.env.PGHOST ?? 'localhost'}`}${u.pathname.length > 1 ? u.pathname : ''}`, connectionString)
    try {
      await db.transaction(async (c) => migrate(c), false)
    } catch (e) {
      await pool.end().catch(() => {})
      throw e
    }
    return db
  }

  async query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(text, values)
    } catch (e) {
      throw this.failure(e)
    }
  }

  /** `fn` on one connection inside begin/commit (rolled back if it throws); `wrap` false leaves the transaction to fn. */
  async transaction<T>(fn: (c: pg.PoolClient) => Promise<T>, wrap = true): Promise<T> {
    return this.inTransaction(this.pool, fn, wrap)
  }

  /** transaction() on the commit connections. */
  commitTransaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    if (!this.commitPool) {
      this.commitPool = new pg.Pool({ connectionString: this.connectionString, max: CONNECTIONS })
      this.commitPool.on('error', () => {})
    }
    return this.inTransaction(this.commitPool, fn, true)
  }

  /** A connection of the caller's own (gc's lock, held across many steps); the caller releases it. */
  async connect(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect()
    } catch (e) {
      throw this.failure(e)
    }
  }

  private async inTransaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>, wrap: boolean): Promise<T> {
    let client: pg.PoolClient
    try {
      client = await pool.connect()
    } catch (e) {
      throw this.failure(e)
    }
    // A connection lost while checked out is an 'error' event on the client as well as its queries' rejection: unheard, it would end the process.
    client.on('error', ignore)
    try {
      if (!wrap) return await fn(client)
      await client.query('begin')
      try {
        const out = await fn(client)
        await client.query('commit')
        return out
      } catch (e) {
        await client.query('rollback').catch(() => {})
        throw e
      }
    } catch (e) {
      throw this.failure(e)
    } finally {
      client.off('error', ignore)
      client.release()
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.end(), this.commitPool?.end()])
  }

  /** Our own errors (a refused put inside a transaction) pass through; the driver's become one line naming the database. */
  failure(e: unknown): unknown {
    if (e instanceof StoreError || !(e instanceof Error)) return e
    return new BackendError(`${this.where}: ${e.message || (e as { code?: string }).code || 'connection failed'}`, { cause: e })
  }
}

const ignore = () => {}
