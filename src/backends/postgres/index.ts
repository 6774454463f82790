import type { BlobService } from '../../castore/blob-service.js'
import type { BackendModule } from '../backend.js'
import type { PostgresAddress } from './address.js'
import { Db } from './db.js'
import { PgDirectoryService } from './directory.js'
import { PgPathInfoService } from './path-info.js'
import { SharedStore, isS3Blobs } from './store.js'

export { Db, PgDirectoryService, PgPathInfoService, SharedStore }

/** Directories and PathInfos in one database; `blobs`, where the caller has them, lets Directory puts check file sizes. */
export async function openPostgres(connectionString: string, storeDir: string, blobs?: BlobService) {
  const db = await Db.open(connectionString)
  return { directories: new PgDirectoryService(db, blobs), pathInfos: new PgPathInfoService(db, storeDir), storeDir, close: () => db.close() }
}

/**
 * The registry's entry point: Directories and PathInfos; with the blob
 * service another URL opened, the whole store over it (Directory puts then
 * check file sizes against those blobs). Over S3 blobs, that store has
 * write sessions, GC roots, temp roots and gc (store.ts); over others (a
 * memory:// or local blob service, which the database cannot see from
 * another machine) it has none of them.
 */
export const backend: BackendModule<PostgresAddress> = {
  open: async (addr, ctx) => {
    if (ctx.blobs && isS3Blobs(ctx.blobs)) return new SharedStore(await Db.open(addr.connectionString), ctx.blobs, ctx.storeDir)
    const meta = await openPostgres(addr.connectionString, ctx.storeDir, ctx.blobs)
    return ctx.blobs ? { blobs: ctx.blobs, ...meta } : meta
  },
}
