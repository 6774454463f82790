import type pg from 'pg'

/*
 * The tables, created and migrated by the backend itself: each step runs
 * once, in order, in one transaction with the version row, under an
 * advisory lock, so several daemons starting at once on one database
 * migrate it once. A database newer than this code is refused rather than
 * guessed at.
 *
 *   tvix_directories        a Directory's canonical protobuf by its BLAKE3
 *   tvix_directory_children parent -> child edges: a closure is one recursive query
 *   tvix_path_infos         a PathInfo's protobuf by its store path digest, and when it was registered
 *   tvix_path_references    referrer -> reference, indexed both ways: closures and
 *                           referrers (gc marking, `query --referrers`) are queries, not walks
 *   tvix_gc_epoch           a sequence gc advances before it deletes anything (sessions.ts)
 *   tvix_gc_roots           named GC roots: name -> store path (roots.ts)
 *   tvix_leases             who holds temp roots, until when by the server's clock (leases.ts)
 *   tvix_temp_roots         a lease's temp roots, gone with it
 *   tvix_gc_doomed          the S3 objects a gc marked dead and has not deleted yet; a commit
 *                           that relies on one takes it out (sessions.ts, gc.ts)
 */

const STEPS: string[] = [
  `create table tvix_directories (
     digest bytea primary key,
     data bytea not null,
     written_at timestamptz not null default now()
   );
   create table tvix_directory_children (
     parent bytea not null,
     child bytea not null,
     primary key (parent, child)
   );
   create table tvix_path_infos (
     digest bytea primary key,
     data bytea not null,
     registered_at timestamptz not null default now()
   );
   create table tvix_path_references (
     referrer bytea not null,
     reference bytea not null,
     primary key (referrer, reference)
   );
   create index tvix_path_references_by_reference on tvix_path_references (reference, referrer);`,
  `create sequence tvix_gc_epoch;
   select setval('tvix_gc_epoch', 1);
   create table tvix_gc_roots (
     name text primary key,
     digest bytea not null,
     path text not null,
     created_at timestamptz not null default now()
   );
   create table tvix_leases (
     id bigserial primary key,
     owner text not null,
     kind text not null,
     expires_at timestamptz not null
   );
   create table tvix_temp_roots (
     lease bigint not null references tvix_leases (id) on delete cascade,
     kind text not null,
     name text not null,
     primary key (lease, kind, name)
   );`,
  `create table tvix_gc_doomed (
     key text primary key,
     sweep bigint not null
   );`,
]

export const SCHEMA_VERSION = STEPS.length
/** Any fixed number: the advisory lock's key, shared by every process migrating a tvix-store database. */
const MIGRATION_LOCK = 0x7476_6978

export async function migrate(client: pg.PoolClient): Promise<void> {
  await client.query('begin')
  try {
    await client.query('select pg_advisory_xact_lock($1)', [MIGRATION_LOCK])
    await client.query('create table if not exists tvix_schema (version integer not null)')
    const row = (await client.query<{ version: number }>('select version from tvix_schema')).rows[0]
    const at = row?.version ?? 0
    if (at > SCHEMA_VERSION) throw new Error(`the database holds tvix-store schema version ${at}; this tvix-store knows up to ${SCHEMA_VERSION}`)
    for (let v = at; v < SCHEMA_VERSION; v++) await client.query(STEPS[v]!)
    if (!row) await client.query('insert into tvix_schema (version) values ($1)', [SCHEMA_VERSION])
    else if (at < SCHEMA_VERSION) await client.query('update tvix_schema set version = $1', [SCHEMA_VERSION])
    await client.query('commit')
  } catch (e) {
    await client.query('rollback').catch(() => {})
    throw e
  }
}
