import type { BlobService } from '../../castore/blob-service.js'
import type { BackendModule } from '../backend.js'
import type { PostgresAddress } from './address.js'
import { Db } from './db.js'
import { PgDirectoryService } from './directory.js'
import { PgPathInfoService } from './path-info.js'

export { Db, PgDirectoryService, PgPathInfoService }

/** Directories and PathInfos in one database; `blobs`, where the caller has them, lets Directory puts check file sizes. */
export async function openPostgres(connectionString: string, storeDir: string, blobs?: Pick<BlobService, 'size'>) {
  const db = await Db.open(connectionString)
  return { directories: new PgDirectoryService(db, blobs), pathInfos: new PgPathInfoService(db, storeDir), storeDir, close: () => db.close() }
}

/**
 * The registry's entry point: Directories and PathInfos; with the blob
 * service another URL opened, the whole store over it (Directory puts then
 * check file sizes against those blobs).
 */
export const backend: BackendModule<PostgresAddress> = {
  open: async (addr, ctx) => {
    const meta = await openPostgres(addr.connectionString, ctx.storeDir, ctx.blobs)
    return ctx.blobs ? { blobs: ctx.blobs, ...meta } : meta
  },
}
