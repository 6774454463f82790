import type { BlobService } from '../../castore/blob-service.js'
import type { VerifyOptions } from '../../store/capabilities.js'
import { hasChunkInventory } from '../s3/inventory.js'
import type { BackendModule } from '../backend.js'
import type { PostgresAddress } from './address.js'
import { Db } from './db.js'
import { PgDirectoryService } from './directory.js'
import { PgPathInfoService } from './path-info.js'
import { verifySharedStore } from './verify.js'

export { Db, PgDirectoryService, PgPathInfoService }

/** Directories and PathInfos in one database; `blobs`, where the caller has them, lets Directory puts check file sizes. */
export async function openPostgres(connectionString: string, storeDir: string, blobs?: BlobService) {
  const db = await Db.open(connectionString)
  const directories = new PgDirectoryService(db, blobs)
  // verify needs the blobs' objects one by one (S3's chunks and chunk lists).
  const verifying = blobs && hasChunkInventory(blobs) ? { verify: (o: VerifyOptions) => verifySharedStore({ db, blobs, inventory: blobs.inventory(), directories, storeDir }, o) } : {}
  return { directories, pathInfos: new PgPathInfoService(db, storeDir), storeDir, close: () => db.close(), ...verifying }
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
