import fs from 'node:fs'
import path from 'node:path'
import { NotFoundError } from '../../errors.js'
import { DEFAULT_STORE_DIR } from '../../store/store-path.js'
import type { GarbageCollecting, GcOptions, GcReport, GcRootsCapable, TempRootsCapable, Verifying, VerifyOptions, VerifyReport, WriteSessions } from '../../store/capabilities.js'
import type { Store, TempRoots } from '../../store/store.js'
import { LocalBlobService } from './blob.js'
import { LocalDirectoryService } from './directory.js'
import { guardStoreIo } from './io-errors.js'
import { LocalRoot } from './layout.js'
import { ObjectGraph } from './object-graph.js'
import { LocalPathInfoService } from './path-info.js'
import type { LocalStoreParts } from './parts.js'
import { GcRoots } from './roots.js'
import { LocalTempRoots } from './temp-roots.js'
import type { BackendModule } from '../backend.js'
import type { LocalAddress } from '../url-forms.js'

/** A store in a local directory: the three services, plus what only runs where the data lives (gc roots, gc, verify). */
export class LocalStore implements Store, LocalStoreParts, WriteSessions, TempRootsCapable, GarbageCollecting, Verifying, GcRootsCapable {
  readonly blobs: LocalBlobService
  readonly directories: LocalDirectoryService
  readonly pathInfos: LocalPathInfoService
  readonly roots: GcRoots
  /** Where blobs live and what refers to what, with the one chunk index (blob reads, gc, verify). */
  readonly objects: ObjectGraph

  constructor(
    readonly root: LocalRoot,
    readonly storeDir: string,
  ) {
    // Every service's I/O failures leave as BackendErrors naming the store and the file (io-errors.ts).
    this.objects = new ObjectGraph(root)
    this.blobs = guardStoreIo(new LocalBlobService(root, this.objects), root.dir)
    this.directories = guardStoreIo(new LocalDirectoryService(root, this.blobs), root.dir)
    this.pathInfos = guardStoreIo(new LocalPathInfoService(root, storeDir), root.dir)
    this.roots = guardStoreIo(new GcRoots(root, storeDir), root.dir)
  }

  writeSession<T>(fn: () => Promise<T>): Promise<T> {
    return this.root.locks.session(fn)
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
