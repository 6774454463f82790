import fsSync, { constants } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { BackendError, UsageError } from '../../errors.js'
import { onInterrupt } from '../../util/interrupt.js'
import { onFile } from './io-errors.js'
import { StoreLocks, type WriteSession } from './locks.js'
import { syncFilesystem } from './syncfs.js'

/**
 * On-disk layout of a local store (format version 4):
 *
 *   tvix-store.json              format marker {"format":"tvix-store-local","version":4}
 *   blobs/b3/<hex[0..2]>/<hex>   contents of a blob up to 1 MiB, named by BLAKE3
 *   blobs/b3/<hex[0..2]>/<hex>.pack   a larger blob as content-defined chunks (pack.ts)
 *   blobs/bundles/<hex>.bundle   the small blobs of one stage commit, with a sorted index (bundle.ts)
 *   blobs/bundles/catalog        one index over many bundles, derived from theirs (bundle-catalog.ts)
 *   blobs/chunk-catalog          one index over many packs' chunks, derived from their manifests (chunk-index.ts)
 *   dirs/b3/<hex[0..2]>/<hex>    canonical Directory protobuf, named by BLAKE3
 *   pathinfo/<nixbase32>         PathInfo protobuf, named by the store path hash part
 *   roots/<name>                 a GC root: the store path it keeps alive (roots.ts)
 *   referrers/<nixbase32>/<nixbase32>  empty: the second path refers to the first (referrers.ts)
 *   locks/                       writer and sweeper tokens (locks.ts)
 *   tmp/                         temp files; same filesystem, so rename is atomic
 *
 * Every object is written to tmp/, fsynced, then renamed to its final
 * name, so a reader sees a whole object or none. Objects are immutable
 * and content-addressed, so concurrent writers of the same object are
 * harmless. Parent directories of renamed files are fsynced (sync()) before
 * a PathInfo that needs them is written.
 *
 * A store that does not exist yet is created by its first commit, not its
 * first temp file: until then temp files go to a folder of this process's
 * own beside the store (`.NAME.new-<pid>-…`), and the store is made whole
 * there and renamed into place. So a failed first write leaves nothing at
 * the store's path (and removes its staging folder); a killed one leaves
 * nothing there or a valid store (its staging folder is removed by the
 * next first writer or gc).
 */
export const FORMAT = { format: 'tvix-store-local', version: 4 } as const
/**
 * Version 1 had no packs, version 2 no referrers index, version 3 no
 * bundles; each is read as it is and upgraded by the first write (the
 * index built first).
 */
const READABLE_VERSIONS = [1, 2, 3, 4]
/** The first version with a complete referrers index. */
export const INDEXED_VERSION = 3
const MARKER = 'tvix-store.json'
/** A blob stored as a pack of chunks: `<hex>.pack` beside plain blobs. */
export const PACK_SUFFIX = '.pack'
/** Above this many files, one syncfs (a child process, ~ms of CPU) beats fsync per file. */
const SYNCFS_ABOVE = 64
/** Bundles of small blobs: `blobs/bundles/`, beside the shards (`blobs/b3/`). */
const BUNDLES = 'bundles'
/** The bundles' catalog, beside them. */
const BUNDLE_CATALOG = 'catalog'
/** A bundle's file name: its index's hex digest and this. */
export const BUNDLE_SUFFIX = '.bundle'
const HEX64 = /^[0-9a-f]{64}$/
const LAYOUT_DIRS = new Set(['tmp', 'blobs', 'dirs', 'pathinfo', 'roots', 'locks', 'referrers'])

/**
 * A local store's folder: the one owner of paths inside it (no other
 * module joins layout segments; locks.ts and temp-roots.ts name their own
 * files inside locksDir), and its write protocol (temp files, publish,
 * commit, sync, creation by the first commit).
 */
export class LocalRoot {
  /** Temp files (temp names: StoreLocks.tempName). */
  readonly tmp: string
  /** `blobs/b3/` and `dirs/b3/`, with the separator: objectPath adds the shard and the name. */
  private readonly blobShards: string
  private readonly dirShards: string
  /** Lock tokens, the sweep epoch and temp roots (locks.ts, temp-roots.ts name the files in it). */
  readonly locksDir: string
  /** PathInfos, one file per hash part (pathInfoPath). */
  readonly pathInfoDir: string
  /** GC roots, one file per name (rootPath). */
  readonly rootsDir: string
  /** The referrers index (referrerEntryPath). */
  readonly referrersDir: string
  readonly locks: StoreLocks
  private readonly sweepListeners: Array<() => void> = []
  private readonly upgradeSteps: Array<{ step: () => Promise<void>; below: number }> = []
  private readonly madeDirs = new Set<string>()
  private readonly dirty = new Set<string>()
  private readonly temps = new Set<string>()
  private cleanupRegistered = false
  private version = 0
  private ready: Promise<void> | undefined
  /** init() has succeeded: writes may go ahead without awaiting it. */
  initialized = false
  /** The store's marker was found or written. */
  private exists = false
  /** Where temp files go while the store does not exist (stagingDir); `made` is the first folder we created for it. */
  private staging: { dir: string; made: string | undefined } | undefined
  private creating: Promise<void> | undefined

  /** `dir`: the store's folder. */
  constructor(readonly dir: string) {
    this.blobShards = path.join(dir, 'blobs', 'b3') + path.sep
    this.dirShards = path.join(dir, 'dirs', 'b3') + path.sep
    this.tmp = path.join(dir, 'tmp')
    this.locksDir = path.join(dir, 'locks')
    this.pathInfoDir = path.join(dir, 'pathinfo')
    this.rootsDir = path.join(dir, 'roots')
    this.referrersDir = path.join(dir, 'referrers')
    this.locks = new StoreLocks(this.locksDir, path.join(dir, MARKER), () => {
      for (const l of this.sweepListeners) l()
    })
  }

  /** `fn` runs when a sweep may have deleted objects this process remembers as stored. */
  onSweep(fn: () => void): void {
    this.sweepListeners.push(fn)
  }

  /** `fn` runs before a store older than version `below` is marked with the current version (it builds what that version promises). */
  onUpgrade(fn: () => Promise<void>, below: number = FORMAT.version): void {
    this.upgradeSteps.push({ step: fn, below })
  }

  /** Whether the store's marker promises a complete referrers index (read when opened or first written). */
  get indexed(): boolean {
    return this.version >= INDEXED_VERSION
  }

  /** A plain blob or a Directory, by hex digest (joined by hand: path.join per blob showed in profiles, and these parts need no normalising). */
  objectPath(kind: 'blobs' | 'dirs', hex: string): string {
    return `${kind === 'blobs' ? this.blobShards : this.dirShards}${hex.slice(0, 2)}${path.sep}${hex}`
  }

  /** The folder of bundles (bundle.ts). */
  get bundlesDir(): string {
    return path.join(this.dir, 'blobs', BUNDLES)
  }

  /** The catalog of the packs' chunks (chunk-index.ts): derived data, not an object, beside the shards. */
  get chunkCatalogPath(): string {
    return path.join(this.dir, 'blobs', 'chunk-catalog')
  }

  /** The catalog of bundles (bundle-catalog.ts): derived data, not an object; bundleNames() leaves it out. */
  get bundleCatalogPath(): string {
    return path.join(this.dir, 'blobs', BUNDLES, BUNDLE_CATALOG)
  }

  /** A bundle of small blobs, by the hex digest of its index. */
  bundlePath(hex: string): string {
    return path.join(this.dir, 'blobs', BUNDLES, hex + BUNDLE_SUFFIX)
  }

  /** The bundles there are, by name (hex); none if the folder is missing. */
  bundleNames(): string[] {
    return listFolder(this.bundlesDir)
      .filter((n) => n.endsWith(BUNDLE_SUFFIX) && HEX64.test(n.slice(0, -BUNDLE_SUFFIX.length)))
      .map((n) => n.slice(0, -BUNDLE_SUFFIX.length))
  }

  /** The pack of a blob stored as chunks (pack.ts), by hex digest. */
  packPath(hex: string): string {
    return this.objectPath('blobs', hex) + PACK_SUFFIX
  }

  pathInfoPath(hashPart: string): string {
    return path.join(this.pathInfoDir, hashPart)
  }

  rootPath(name: string): string {
    return path.join(this.rootsDir, name)
  }

  /** The folder of the paths that refer to `referenced`, and one entry in it (referrers.ts). */
  referrersOf(referenced: string): string {
    return path.join(this.referrersDir, referenced)
  }

  referrerEntryPath(referenced: string, referrer: string): string {
    return path.join(this.referrersDir, referenced, referrer)
  }

  /**
   * Every file in the shards of `kind` (`blobs/b3/<xx>/`, `dirs/b3/<xx>/`),
   * unchecked: callers tell objects from strays by name. A missing folder,
   * or a stray file where a folder would be, holds nothing.
   */
  *shardFiles(kind: 'blobs' | 'dirs'): Generator<{ name: string; file: string }> {
    const base = path.join(this.dir, kind, 'b3')
    for (const shard of listFolder(base)) {
      const dir = path.join(base, shard)
      for (const name of listFolder(dir)) yield { name, file: path.join(dir, name) }
    }
  }

  /** The names in pathinfo/ (hash parts, unless something else put files there). */
  pathInfoNames(): string[] {
    return listFolder(this.pathInfoDir)
  }

  /** Temp files in tmp/ whose writer no longer runs (killed mid-write), for gc. */
  staleTemps(): string[] {
    return listFolder(this.tmp)
      .filter((n) => !StoreLocks.tempOwnerAlive(n))
      .map((n) => path.join(this.tmp, n))
  }

  /** Checks the format marker of an existing store; does not create anything. */
  async checkFormat(): Promise<boolean> {
    let text: string
    try {
      // Synchronous: a few bytes, and a read-only command then needs neither fs/promises nor the thread pool.
      text = fsSync.readFileSync(path.join(this.dir, MARKER), 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new BackendError(`cannot read store at ${this.dir}`, { cause: e })
      // Empty, or a store another process is creating right now (layout
      // folders come before the marker): initialise. Anything else is not ours.
      const entries: string[] = await fs.readdir(this.dir).catch(() => [])
      // The marker may have appeared since we looked: another process finished creating the store.
      if (entries.includes(MARKER)) return this.checkFormat()
      if (entries.some((e) => !LAYOUT_DIRS.has(e))) throw new UsageError(`${this.dir} is not a tvix-store directory (no ${MARKER})`)
      return false
    }
    let marker: { format?: string; version?: number }
    try {
      marker = JSON.parse(text)
    } catch {
      marker = {}
    }
    if (marker.format !== FORMAT.format || !READABLE_VERSIONS.includes(marker.version ?? -1)) {
      throw new UsageError(`store at ${this.dir} has an unsupported format (${text.trim()}); this tvix-store reads versions ${READABLE_VERSIONS.join(', ')}`)
    }
    this.version = marker.version!
    this.exists = true
    return true
  }

  /**
   * Checks the store before a write: refuses a folder that is not one.
   * Creates nothing: a store that does not exist yet is created by the
   * first commit (create()).
   */
  init(): Promise<void> {
    this.ready ??= (async () => {
      // Packs are new in version 2, the referrers index in 3: build what the new version
      // promises, then mark the store, before writing anything of our own.
      if ((await this.checkFormat()) && this.version < FORMAT.version) {
        for (const { step, below } of this.upgradeSteps) if (this.version < below) await step()
        await this.writeAtomic(path.join(this.dir, MARKER), Buffer.from(JSON.stringify(FORMAT) + '\n'))
        await this.sync()
        this.version = FORMAT.version
      }
      this.initialized = true
    })()
    return this.ready
  }

  /** A fresh temp file name; tracked until published or discarded, and removed if the process is interrupted. */
  tempPath(): string {
    if (this.temps.size === 0 && !this.cleanupRegistered) {
      onInterrupt(() => {
        for (const t of this.temps) fsSync.rmSync(t, { force: true })
        this.temps.clear()
        this.dropStaging()
      })
      this.cleanupRegistered = true
    }
    const t = path.join(this.exists ? this.tmp : this.stagingDir(), StoreLocks.tempName())
    this.temps.add(t)
    return t
  }

  /**
   * Removes a temp file that will not be published. Best effort: it runs
   * after a failure, which is what the caller must hear (a temp file that
   * cannot be removed is a stale one gc removes).
   */
  async discard(tmp: string): Promise<void> {
    await fs.rm(tmp, { force: true }).catch(() => {})
    this.temps.delete(tmp)
    this.dropStaging()
  }

  /**
   * The folder for temp files while the store does not exist: beside it,
   * this process's own, on the same filesystem as the store will be. For
   * an existing (empty) folder on a filesystem of its own, a mount point,
   * that would not be the same filesystem, so its tmp/ is used instead.
   */
  private stagingDir(): string {
    if (this.staging) return this.staging.dir
    const parent = path.dirname(this.dir)
    const own = fsSync.statSync(this.dir, { throwIfNoEntry: false })
    if (own && own.dev !== fsSync.statSync(parent).dev) {
      this.staging = { dir: this.tmp, made: fsSync.mkdirSync(this.tmp, { recursive: true }) }
    } else {
      removeStaleStaging(this.dir)
      const dir = path.join(parent, `${stagingPrefix(this.dir)}${StoreLocks.tempName()}`)
      this.staging = { dir, made: fsSync.mkdirSync(dir, { recursive: true }) }
    }
    return this.staging.dir
  }

  /** Whether a temp file of ours is still in `dir`: the oldest usually is, so a commit publishing thousands stops at the first (no copy of the set). */
  private hasTempIn(dir: string): boolean {
    for (const t of this.temps) if (path.dirname(t) === dir) return true
    return false
  }

  /**
   * Removes the staging folder once none of our temp files are left in it,
   * and the folders made for it while the store does not exist (rmdir: a
   * folder another process has put something in stays).
   */
  private dropStaging(): void {
    const s = this.staging
    if (!s || this.hasTempIn(s.dir)) return
    this.staging = undefined
    // The store's own tmp/ now, or a folder that was there before us.
    if ((this.exists && s.dir === this.tmp) || !s.made) return
    const stop = this.exists ? s.dir : s.made
    for (let d = s.dir; ; d = path.dirname(d)) {
      try {
        fsSync.rmdirSync(d)
      } catch {
        return
      }
      if (d === stop || d === path.dirname(d)) return
    }
  }

  /**
   * Creates the store, if it does not exist yet, before the first commit
   * publishes anything into it. Made whole beside it and renamed into
   * place, so it appears complete or not at all; of concurrent creators
   * one rename wins and the others find its store. An existing empty
   * folder gets the layout in place, the marker last.
   */
  private async create(): Promise<void> {
    if (this.exists) return
    this.creating ??= (async () => {
      if (await this.checkFormat()) return
      if (!fsSync.existsSync(this.dir)) {
        const parent = path.dirname(this.dir)
        fsSync.mkdirSync(parent, { recursive: true })
        const next = path.join(parent, `${stagingPrefix(this.dir)}${StoreLocks.tempName()}`)
        try {
          await makeLayout(next)
          fsSync.renameSync(next, this.dir)
          await fsyncPath(parent)
        } catch (e) {
          fsSync.rmSync(next, { recursive: true, force: true })
          // Another creator's rename won: its store is checked below.
          const code = (e as NodeJS.ErrnoException).code
          if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw e
        }
      }
      if (!(await this.checkFormat())) await makeLayout(this.dir)
      if (!(await this.checkFormat())) throw new BackendError(`could not create the store at ${this.dir}`)
    })().finally(() => (this.creating = undefined))
    await this.creating
  }

  ensureParent(file: string): void {
    const dir = path.dirname(file)
    if (this.madeDirs.has(dir)) return
    fsSync.mkdirSync(dir, { recursive: true })
    this.madeDirs.add(dir)
  }

  /**
   * Makes the contents of `files` durable. A handful are fsynced one by
   * one; for more, one syncfs(2) of the store's filesystem (`sync -f`,
   * coreutils) is far cheaper than thousands of fsyncs, each a journal
   * commit. Falls back to fsync per file if `sync` cannot be run.
   */
  async syncFiles(files: string[]): Promise<void> {
    // Their own folder: tmp/ does not exist before the store does.
    if (files.length > SYNCFS_ABOVE && (await syncFilesystem(path.dirname(files[0]!)))) return
    await Promise.all(files.map((f) => fsyncPath(f)))
  }

  /** temp file, write, fsync, rename; `session` relies on the result. */
  async writeAtomic(final: string, data: Uint8Array, session?: WriteSession): Promise<void> {
    await this.publish(await this.writeTemp(data), final, session)
  }

  /**
   * writeAtomic that never replaces: the temp file is hard-linked to its
   * final name (link(2) fails when the name exists), so of two writers
   * exactly one wins. False, and nothing written, if `final` existed.
   * `before`: what must be durable before the name appears (a sync), run
   * while the temp file is written and synced: one round of waiting on
   * the disk instead of two.
   */
  async writeNew(final: string, data: Uint8Array, before?: () => Promise<void>): Promise<boolean> {
    const [written, first] = await Promise.allSettled([this.writeTemp(data), before?.()])
    if (written.status === 'rejected') throw written.reason
    const tmp = written.value
    if (first.status === 'rejected') {
      await this.discard(tmp)
      throw first.reason
    }
    try {
      this.ensureParent(final)
      fsSync.linkSync(tmp, final)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
      throw e
    } finally {
      await this.discard(tmp)
    }
    this.dirty.add(path.dirname(final))
    return true
  }

  /** A new temp file holding `data`, fsynced. */
  private async writeTemp(data: Uint8Array): Promise<string> {
    const tmp = this.tempPath()
    const fh = await fs.open(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o444)
    try {
      await fh.writeFile(data)
      await fh.sync()
    } catch (e) {
      await fh.close()
      await this.discard(tmp)
      throw onFile(e, tmp)
    }
    await fh.close()
    return tmp
  }

  /** Moves a finished, fsynced temp file to its final name, which `session` then relies on. */
  async publish(tmp: string, final: string, session?: WriteSession): Promise<void> {
    // Synchronous: a rename is microseconds, an async one a thread-pool round trip.
    this.ensureParent(final)
    fsSync.renameSync(tmp, final)
    this.temps.delete(tmp)
    this.dropStaging()
    this.dirty.add(path.dirname(final))
    // Not yet reachable from a PathInfo: a sweep could take it until the session registers what needs it.
    session?.rely(final)
  }

  /** A short publishing step of `session` with sweeps excluded (StoreLocks.commit); the first one creates the store. */
  async commit<T>(session: WriteSession | undefined, fn: () => Promise<T>): Promise<T> {
    await this.create()
    return this.locks.commit(session, fn)
  }

  /** A folder whose entries changed outside publish/remove (sync() fsyncs it). */
  markDirty(dir: string): void {
    this.dirty.add(dir)
  }

  /** Deletes an object file (gc, repair); sync() makes the deletion durable. False if it was already gone. */
  remove(file: string): boolean {
    try {
      fsSync.unlinkSync(file)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw e
    }
    this.dirty.add(path.dirname(file))
    return true
  }

  /** fsyncs the directories that received renames or deletions, so those changes survive a crash. */
  async sync(): Promise<void> {
    const dirs = [...this.dirty]
    this.dirty.clear()
    if (dirs.length > SYNCFS_ABOVE && (await syncFilesystem(this.tmp))) return
    // A folder removed since (a referrers folder gc emptied) has nothing left to sync; its parent records the removal.
    await Promise.all(dirs.map((d) => fsyncPath(d).catch(ignoreMissing)))
  }
}

/** Staging folders beside the store at `root` start with this: `.NAME.new-`. */
function stagingPrefix(root: string): string {
  return `.${path.basename(root)}.new-`
}

/** Staging folders of first writers that were killed (their owner no longer runs). */
export function removeStaleStaging(root: string): void {
  const prefix = stagingPrefix(root)
  let names: string[]
  try {
    names = fsSync.readdirSync(path.dirname(root))
  } catch {
    return
  }
  for (const n of names) {
    if (n.startsWith(prefix) && !StoreLocks.tempOwnerAlive(n.slice(prefix.length))) fsSync.rmSync(path.join(path.dirname(root), n), { recursive: true, force: true })
  }
}

/** An empty store's folders and, last, its marker (written to tmp/ and renamed: concurrent creators write the same bytes). */
async function makeLayout(dir: string): Promise<void> {
  for (const d of ['tmp', 'blobs/b3', `blobs/${BUNDLES}`, 'dirs/b3', 'pathinfo', 'referrers']) await fs.mkdir(path.join(dir, d), { recursive: true })
  const tmp = path.join(dir, 'tmp', StoreLocks.tempName())
  await fs.writeFile(tmp, JSON.stringify(FORMAT) + '\n', { flag: 'wx', mode: 0o444 })
  await fsyncPath(tmp)
  await fs.rename(tmp, path.join(dir, MARKER))
  for (const d of ['blobs', 'dirs', 'tmp', '.']) await fsyncPath(path.join(dir, d))
}

/** The hex digest of the blob a file in blobs/ is the pack of (`<hex>.pack`), or undefined for a plain blob's name. */
export function packOwner(name: string): string | undefined {
  return name.endsWith(PACK_SUFFIX) ? name.slice(0, -PACK_SUFFIX.length) : undefined
}

/** The names in a folder; none if it is missing or not a folder. */
function listFolder(dir: string): string[] {
  try {
    return fsSync.readdirSync(dir)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return []
    throw e
  }
}

/**
 * Reads a small metadata object (Directory, PathInfo) synchronously: one
 * syscall sequence of microseconds, cheaper than the thread-pool round
 * trips of the async API. Undefined if absent.
 */
export function readSmallFile(p: string): Buffer | undefined {
  try {
    return fsSync.readFileSync(p)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
}

function ignoreMissing(e: NodeJS.ErrnoException): void {
  if (e.code !== 'ENOENT') throw e
}

async function fsyncPath(p: string): Promise<void> {
  const fh = await fs.open(p, 'r')
  try {
    await fh.sync()
  } catch (e) {
    throw onFile(e, p)
  } finally {
    await fh.close()
  }
}

