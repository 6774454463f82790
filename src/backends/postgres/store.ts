import type { BlobService } from '../../castore/blob-service.js'
import type { GarbageCollecting, GcOptions, GcReport, GcRootsCapable, TempRootsCapable, Verifying, VerifyOptions, VerifyReport, WriteSessions } from '../../store/capabilities.js'
import type { Store, TempRoots } from '../../store/store.js'
import { toHex } from '../../castore/digest.js'
import type { PublishGuard, S3BlobService } from '../s3/blob.js'
import { CHUNKS, LISTS } from '../s3/inventory.js'
import type { Db } from './db.js'
import { PgDirectoryService } from './directory.js'
import { collectSharedGarbage } from './gc.js'
import { PgTempRoots, leaseTtlMs } from './leases.js'
import { PgPathInfoService } from './path-info.js'
import { PgGcRoots } from './roots.js'
import { WriteGuard, relyS3 } from './sessions.js'
import { verifySharedStore } from './verify.js'

/** Blobs this store can enumerate and delete (S3), recognised by what they offer, not their class. */
export function isS3Blobs(blobs: BlobService): blobs is S3BlobService {
  return typeof (blobs as Partial<S3BlobService>).attachGuard === 'function'
}

/**
 * The whole store over one PostgreSQL database and an S3 bucket
 * (`--store postgres://… --blob-service-addr s3://…`), shared by every
 * process and machine given the same two: write sessions, GC roots and
 * temp roots (leases) in the database, so gc is safe while other machines
 * write (sessions.ts, leases.ts, gc.ts).
 */
export class SharedStore implements Store, WriteSessions, TempRootsCapable, GcRootsCapable, GarbageCollecting, Verifying {
  readonly directories: PgDirectoryService
  readonly pathInfos: PgPathInfoService
  readonly roots: PgGcRoots
  protected readonly guard: WriteGuard

  constructor(
    protected readonly db: Db,
    readonly blobs: S3BlobService,
    readonly storeDir: string,
    private readonly ttlMs = leaseTtlMs(),
  ) {
    this.guard = new WriteGuard(db, {
      exists: async (key) => (await blobs.s3.head(key)) !== undefined,
      chunksOf: async (key) => (await blobs.chunks(Buffer.from(key.slice(LISTS.length), 'hex')))?.map((c) => CHUNKS + toHex(c.digest)),
    })
    const guard = this.guard
    const publish: PublishGuard = {
      session: (fn) => guard.session(fn),
      rely: (key) => guard.rely(relyS3(key)),
      commit: (fn) => guard.commit(() => fn()),
    }
    blobs.attachGuard(publish)
    this.directories = new PgDirectoryService(db, blobs, guard)
    this.pathInfos = new PgPathInfoService(db, storeDir, guard)
    this.roots = new PgGcRoots(db, guard)
  }

  /** The session is this store's own (sessions.ts keeps it per async context), so the view `fn` gets is the store itself. */
  writeSession<T>(fn: (store: Store) => Promise<T>): Promise<T> {
    return this.guard.session(() => fn(this))
  }

  tempRoots(): TempRoots {
    return new PgTempRoots(this.db, this.guard, this.ttlMs)
  }

  collectGarbage(opts: GcOptions): Promise<GcReport> {
    return collectSharedGarbage({ db: this.db, s3: this.blobs.s3, storeDir: this.storeDir }, opts)
  }

  verify(opts: VerifyOptions): Promise<VerifyReport> {
    return verifySharedStore({ db: this.db, blobs: this.blobs, inventory: this.blobs.inventory(), directories: this.directories, storeDir: this.storeDir }, opts)
  }

  /** Closes the database; the blobs belong to the URL that opened them. */
  close(): Promise<void> {
    return this.db.close()
  }
}
