import fs from 'node:fs'
import path from 'node:path'
import { NotFoundError } from '../../errors.js'
import { DEFAULT_STORE_DIR } from '../../store/store-path.js'
import type { GarbageCollecting, GcOptions, GcReport, GcRootsCapable, ServingPreparable, TempRootsCapable, Verifying, VerifyOptions, VerifyReport, WriteSessions } from '../../store/capabilities.js'
import type { Store, TempRoots } from '../../store/store.js'
import { LocalBlobService, SharedBlobState } from './blob.js'
import { LocalDirectoryService } from './directory.js'
import { guardStoreIo } from './io-errors.js'
import { INDEXED_VERSION, LocalRoot } from './layout.js'
import type { WriteSession } from './locks.js'
import { ObjectGraph } from './object-graph.js'
import { LocalPathInfoService } from './path-info.js'
import { ReferrersIndex } from './referrers.js'
import type { LocalStoreParts } from './parts.js'
import { GcRoots } from './roots.js'
import { startSyncHelper } from './syncfs.js'
import { LocalTempRoots } from './temp-roots.js'
import type { BackendModule } from '../backend.js'
import type { LocalAddress } from '../url-forms.js'

/** What every view of one local store shares: made once, when the store is opened. */
interface Shared {
  objects: ObjectGraph
  blobs: SharedBlobState
}

/**
 * A store in a local directory: the three services, plus what only runs
 * where the data lives (gc roots, gc, verify). writeSession hands its
 * callback a view of the same store bound to a new write session: the
 * same folder, caches and object graph, with services that record what
 * the session relies on (locks.ts).
 */
export class LocalStore implements Store, LocalStoreParts, WriteSessions, TempRootsCapable, GarbageCollecting, Verifying, GcRootsCapable, ServingPreparable {
  readonly blobs: LocalBlobService
  readonly directories: LocalDirectoryService
  readonly pathInfos: LocalPathInfoService
  readonly roots: GcRoots
  /** Where blobs live and what refers to what, with the one chunk index (blob reads, gc, verify). */
  readonly objects: ObjectGraph
  private readonly shared: Shared

  /** `shared` and `session`: given to a view of an open store bound to a write session (writeSession). */
  constructor(
    readonly root: LocalRoot,
    readonly storeDir: string,
    shared?: Shared,
    private readonly session?: WriteSession,
  ) {
    if (!shared) {
      const objects = new ObjectGraph(root)
      shared = { objects, blobs: new SharedBlobState(root) }
      // A store from before the referrers index gets one before it is marked as having one.
      root.onUpgrade(() => new ReferrersIndex(root).build(), INDEXED_VERSION)
    }
    this.shared = shared
    this.objects = shared.objects
    // Every service's I/O failures leave as BackendErrors naming the store and the file (io-errors.ts).
    this.blobs = guardStoreIo(new LocalBlobService(root, this.objects, shared.blobs, session), root.dir)
    this.directories = guardStoreIo(new LocalDirectoryService(root, this.blobs, session), root.dir)
    this.pathInfos = guardStoreIo(new LocalPathInfoService(root, storeDir, session), root.dir)
    this.roots = guardStoreIo(new GcRoots(root, storeDir, session), root.dir)
  }

  /** `fn` with this store as a new write session sees it; within one (this is a session's view), the same session. */
  writeSession<T>(fn: (store: LocalStore) => Promise<T>): Promise<T> {
    if (this.session) return fn(this)
    return fn(new LocalStore(this.root, this.storeDir, this.shared, this.root.locks.openSession()))
  }

  /** Its commits of many files sync through a helper shell (syncfs.ts): started before the server is big or busy. */
  prepareToServe(): void {
    startSyncHelper()
  }

  tempRoots(): TempRoots {
    return guardStoreIo(new LocalTempRoots(this.root.locksDir, this.root.locks), this.root.dir)
  }

  // gc and verify load on first use: most commands never need them.
  async collectGarbage(opts: GcOptions): Promise<GcReport> {
    return (await import('./gc.js')).collectGarbage(this, opts)
  }

  async verify(opts: VerifyOptions): Promise<VerifyReport> {
    return (await import('./verify.js')).verifyStore(this, opts)
  }

  async close(): Promise<void> {}
}

/**
 * Opens (without creating: the first write does) a local store rooted at
 * `dir`. With `mustExist`, a store not created yet is a NotFoundError
 * naming the folder: a reading command on a mistyped path must not look
 * like one on an empty store.
 */
export async function openLocalStore(dir: string, storeDir = DEFAULT_STORE_DIR, opts: { mustExist?: boolean } = {}): Promise<LocalStore> {
  const root = new LocalRoot(path.resolve(dir))
  const exists = await root.checkFormat().catch((e) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw e
  })
  if (!exists && opts.mustExist) {
    const why = fs.existsSync(root.dir) ? 'the folder holds no store yet' : 'no such folder'
    throw new NotFoundError(`no store at ${root.dir} (${why}; \`import\` or \`copy --to\` creates one)`)
  }
  return new LocalStore(root, storeDir)
}

/** The registry's entry point: a folder (`mustExist`: a NotFoundError if no store is there yet). */
export const backend: BackendModule<LocalAddress> = { open: (addr, ctx) => openLocalStore(addr.path, ctx.storeDir, { mustExist: ctx.mustExist }) }
