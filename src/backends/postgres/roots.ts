import { NotFoundError } from '../../errors.js'
import { type GcRoot, type GcRootSet, validateRootName } from '../../store/capabilities.js'
import { type StorePath, basename, parseBasename } from '../../store/store-path.js'
import type { Db } from './db.js'
import type { WriteGuard } from './sessions.js'

/**
 * Named GC roots as rows (name -> store path), shared by every machine on
 * the database. Adding is a commit, so a sweep never runs between the
 * session's lookup of the path and the root's insert; adding under an
 * existing name repoints it.
 */
export class PgGcRoots implements GcRootSet {
  constructor(
    private readonly db: Db,
    private readonly guard: WriteGuard,
  ) {}

  async add(name: string, storePath: StorePath): Promise<void> {
    validateRootName(name)
    await this.guard.commit((c) =>
      c.query(
        `insert into tvix_gc_roots (name, digest, path) values ($1, $2, $3)
         on conflict (name) do update set digest = excluded.digest, path = excluded.path, created_at = now()`,
        [name, storePath.digest, basename(storePath)],
      ),
    )
  }

  async remove(name: string): Promise<void> {
    validateRootName(name)
    const r = await this.db.query('delete from tvix_gc_roots where name = $1', [name])
    if (r.rowCount === 0) throw new NotFoundError(`no GC root named ${JSON.stringify(name)}`)
  }

  async list(): Promise<GcRoot[]> {
    const rows = (await this.db.query<{ name: string; path: string }>('select name, path from tvix_gc_roots order by name')).rows
    return rows.map((r) => {
      try {
        return { name: r.name, path: parseBasename(r.path) }
      } catch {
        return { name: r.name }
      }
    })
  }

  link(name: string): string {
    return `${this.db.where} tvix_gc_roots/${name}`
  }
}
