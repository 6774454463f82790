import type pg from 'pg'
import { requireDigestLength } from '../../castore/digest.js'
import type { PathInfo, Signature } from '../../store/path-info.js'
import { checkPut, keepStored } from '../../store/path-info-admission.js'
import type { PathInfoService, SignatureAdding } from '../../store/path-info-service.js'
import { decodePathInfo, encodePathInfo } from '../../store/proto.js'
import { withSignatures } from '../../store/signing.js'
import { DIGEST_LEN } from '../../store/store-path.js'
import type { CallOptions } from '../../util/call-options.js'
import type { Db } from './db.js'
import { relyPath, type WriteGuard } from './sessions.js'

/** PathInfos listed per query: list() pages through the table by digest, holding one page. */
const PAGE = 1000

/**
 * PathInfos in PostgreSQL, one row each by the store path's digest (when
 * it was registered kept beside it), and every reference as a row of
 * tvix_path_references in the same transaction: referrers and closures
 * are indexed queries. A stored path is never replaced: the insert that
 * wins is the one stored, and the others are compared with it.
 */
export class PgPathInfoService implements PathInfoService, SignatureAdding {
  /** With `guard` (a store with gc), writes are commits and a path found is relied on (sessions.ts). */
  constructor(
    private readonly db: Db,
    private readonly storeDir: string,
    private readonly guard?: WriteGuard,
  ) {}

  private commit<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.guard ? this.guard.commit(fn) : this.db.transaction(fn)
  }

  async get(digest: Uint8Array, opts?: CallOptions): Promise<PathInfo | undefined> {
    requireDigestLength(digest, DIGEST_LEN)
    opts?.signal?.throwIfAborted()
    const row = (await this.db.query<{ data: Buffer }>('select data from tvix_path_infos where digest = $1', [digest])).rows[0]
    if (row) this.guard?.rely(relyPath(digest))
    return row && decodePathInfo(row.data)
  }

  async put(info: PathInfo, opts?: CallOptions): Promise<PathInfo> {
    const path = checkPut(info)
    opts?.signal?.throwIfAborted()
    const stored = await this.commit(async (c) => {
      const inserted = await c.query('insert into tvix_path_infos (digest, data) values ($1, $2) on conflict do nothing', [path.digest, encodePathInfo(info)])
      if (inserted.rowCount === 0) {
        const stored = (await c.query<{ data: Buffer }>('select data from tvix_path_infos where digest = $1', [path.digest])).rows[0]!
        return keepStored(decodePathInfo(stored.data), info, this.storeDir)
      }
      if (info.references.length > 0) {
        await c.query('insert into tvix_path_references (referrer, reference) select $1, r from unnest($2::bytea[]) r', [path.digest, info.references])
      }
      return info
    })
    this.guard?.rely(relyPath(path.digest))
    return stored
  }

  /** Read for update, merge, write: concurrent additions queue on the row and all land. */
  async addSignatures(digest: Uint8Array, sigs: Signature[], opts?: CallOptions): Promise<PathInfo | undefined> {
    requireDigestLength(digest, DIGEST_LEN)
    opts?.signal?.throwIfAborted()
    return this.commit(async (c) => {
      const row = (await c.query<{ data: Buffer }>('select data from tvix_path_infos where digest = $1 for update', [digest])).rows[0]
      if (!row) return undefined
      const stored = decodePathInfo(row.data)
      const signed = withSignatures(stored, sigs)
      if (!signed) return stored
      await c.query('update tvix_path_infos set data = $2 where digest = $1', [digest, encodePathInfo(signed)])
      return signed
    })
  }

  async referrers(digest: Uint8Array, opts?: CallOptions): Promise<PathInfo[]> {
    requireDigestLength(digest, DIGEST_LEN)
    opts?.signal?.throwIfAborted()
    const rows = (await this.db.query<{ data: Buffer }>('select p.data from tvix_path_references r join tvix_path_infos p on p.digest = r.referrer where r.reference = $1', [digest])).rows
    return rows.map((r) => decodePathInfo(r.data))
  }

  async *list(opts?: CallOptions): AsyncIterable<PathInfo> {
    let after: Buffer = Buffer.alloc(0)
    for (;;) {
      opts?.signal?.throwIfAborted()
      const rows = (await this.db.query<{ digest: Buffer; data: Buffer }>('select digest, data from tvix_path_infos where digest > $1 order by digest limit $2', [after, PAGE])).rows
      for (const r of rows) yield decodePathInfo(r.data)
      if (rows.length < PAGE) return
      after = rows[rows.length - 1]!.digest
    }
  }
}
