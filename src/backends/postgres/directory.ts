import type { BlobService } from '../../castore/blob-service.js'
import { type B3Digest, requireDigestLength, toHex } from '../../castore/digest.js'
import type { Directory } from '../../castore/directory.js'
import { bufferedStage, ClosureValidator, type DirectoryService, type DirectoryStage } from '../../castore/directory-service.js'
import { decodeDirectory } from '../../castore/proto.js'
import type { CallOptions } from '../../util/call-options.js'
import type { Db } from './db.js'
import { relyDir, type WriteGuard } from './sessions.js'

/** Rows per INSERT: each statement a few hundred kB at most, and few round trips for a large closure. */
const BATCH = 1000

/**
 * Directories in PostgreSQL: one row each (canonical bytes by digest) and
 * its edges to its children, so a closure comes back in one recursive
 * query. A closure is written in one transaction, so a reader sees all of
 * it or none; rows are immutable and inserted with ON CONFLICT DO NOTHING,
 * so concurrent writers of shared Directories are harmless.
 */
export class PgDirectoryService implements DirectoryService {
  /**
   * With `blobs`, file sizes are checked against the blobs stored (as the
   * other backends that can see them do); with `guard` (a store with gc),
   * puts are commits and what is found stored is relied on (sessions.ts).
   */
  constructor(
    private readonly db: Db,
    private readonly blobs?: Pick<BlobService, 'size'>,
    private readonly guard?: WriteGuard,
  ) {}

  async get(d: B3Digest, opts?: CallOptions): Promise<Directory | undefined> {
    requireDigestLength(d)
    opts?.signal?.throwIfAborted()
    const row = (await this.db.query<{ data: Buffer }>('select data from tvix_directories where digest = $1', [d])).rows[0]
    if (row) this.guard?.rely(relyDir(d))
    return row && decodeDirectory(row.data)
  }

  /** The closure in one query (the edges walked by the database), then breadth-first from the root, each once. */
  async *getClosure(root: B3Digest, opts?: CallOptions): AsyncIterable<Directory> {
    requireDigestLength(root)
    const rows = (
      await this.db.query<{ digest: Buffer; data: Buffer }>(
        `with recursive closure(digest) as (
           select $1::bytea
           union
           select c.child from tvix_directory_children c join closure on c.parent = closure.digest
         )
         select d.digest, d.data from tvix_directories d join closure using (digest)`,
        [root],
      )
    ).rows
    const byHex = new Map(rows.map((r) => [toHex(r.digest), r.data]))
    const seen = new Set<string>()
    const queue = [toHex(root)]
    for (let i = 0; i < queue.length; i++) {
      opts?.signal?.throwIfAborted()
      const bytes = byHex.get(queue[i]!)
      if (!bytes) return
      const dir = decodeDirectory(bytes)
      yield dir
      for (const c of dir.directories) {
        const k = toHex(c.digest)
        if (!seen.has(k)) {
          seen.add(k)
          queue.push(k)
        }
      }
    }
  }

  async putClosure(dirs: Iterable<Directory> | AsyncIterable<Directory>, opts?: CallOptions): Promise<B3Digest> {
    const v = new ClosureValidator((d) => this.get(d, opts), this.blobs?.size && ((d) => this.blobs!.size!(d, opts)))
    const fresh: Array<{ digest: B3Digest; bytes: Uint8Array; children: B3Digest[] }> = []
    for await (const dir of dirs) {
      const a = await v.accept(dir)
      if (a.fresh) fresh.push({ digest: a.digest, bytes: a.bytes, children: dir.directories.map((c) => c.digest) })
    }
    const root = v.finish()
    opts?.signal?.throwIfAborted()
    const commit: Db['transaction'] = this.guard ? (fn) => this.guard!.commit(fn) : (fn) => this.db.transaction(fn)
    await commit(async (c) => {
      for (let i = 0; i < fresh.length; i += BATCH) {
        const part = fresh.slice(i, i + BATCH)
        await c.query('insert into tvix_directories (digest, data) select * from unnest($1::bytea[], $2::bytea[]) on conflict do nothing', [part.map((d) => d.digest), part.map((d) => d.bytes)])
        const edges = part.flatMap((d) => d.children.map((child) => [d.digest, child] as const))
        if (edges.length > 0) {
          await c.query('insert into tvix_directory_children (parent, child) select * from unnest($1::bytea[], $2::bytea[]) on conflict do nothing', [edges.map((e) => e[0]), edges.map((e) => e[1])])
        }
      }
    })
    for (const d of fresh) this.guard?.rely(relyDir(d.digest))
    return root
  }

  stage(): DirectoryStage {
    return bufferedStage(this)
  }
}
