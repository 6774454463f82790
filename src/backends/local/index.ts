import fs from 'node:fs'
import path from 'node:path'
import { NotFoundError } from '../../errors.js'
import { DEFAULT_STORE_DIR } from '../../store/store-path.js'
import type { GarbageCollecting, GcOptions, GcReport, GcRootsCapable, TempRootsCapable, Verifying, VerifyOptions, VerifyReport, WriteSessions } from '../../store/capabilities.js'
import type { Store, TempRoots } from '../../store/store.js'
import { LocalBlobService } from './blob.js'
import { LocalDirectoryService } from './directory.js'
import { LocalRoot } from './layout.js'
import { LocalPathInfoService } from './path-info.js'
import { GcRoots } from './roots.js'
import { LocalTempRoots } from './temp-roots.js'

/** A store in a local directory: the three services, plus what only runs where the data lives (gc roots, gc, verify). */
export class LocalStore implements Store, WriteSessions, TempRootsCapable, GarbageCollecting, Verifying, GcRootsCapable {
  readonly blobs: LocalBlobService
  readonly directories: LocalDirectoryService
  readonly pathInfos: LocalPathInfoService
  readonly roots: GcRoots

  constructor(
    readonly root: LocalRoot,
    readonly storeDir: string,
  ) {
    this.blobs = new LocalBlobService(root)
    this.directories = new LocalDirectoryService(root, this.blobs)
    this.pathInfos = new LocalPathInfoService(root, this.blobs, this.directories, storeDir)
    this.roots = new GcRoots(root, storeDir)
  }

  writeSession<T>(fn: () => Promise<T>): Promise<T> {
    return this.root.locks.session(fn)
  }

  tempRoots(): TempRoots {
    return new LocalTempRoots(this.root.root, this.root.locks)
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
    const why = fs.existsSync(root.root) ? 'the folder holds no store yet' : 'no such folder'
    throw new NotFoundError(`no store at ${root.root} (${why}; \`import\` or \`copy --to\` creates one)`)
  }
  return new LocalStore(root, storeDir)
}
