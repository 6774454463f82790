import { spawn } from 'node:child_process'
import fsSync, { constants } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { BackendError, UsageError } from '../../errors.js'
import { onInterrupt } from '../../util/interrupt.js'
import { StoreLocks } from './locks.js'

/**
 * On-disk layout of a local store (format version 3):
 *
 *   tvix-store.json              format marker {"format":"tvix-store-local","version":3}
 *   blobs/b3/<hex[0..2]>/<hex>   contents of a blob up to 1 MiB, named by BLAKE3
 *   blobs/b3/<hex[0..2]>/<hex>.pack   a larger blob as content-defined chunks (pack.ts)
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
 */
export const FORMAT = { format: 'tvix-store-local', version: 3 } as const
/**
 * Version 1 had no packs, version 2 no referrers index; both are read as
 * they are and upgraded by the first write (the index built first).
 */
const READABLE_VERSIONS = [1, 2, 3]
/** The first version with a complete referrers index. */
export const INDEXED_VERSION = 3
const MARKER = 'tvix-store.json'
/** Above this many files, one syncfs (a child process, ~ms of CPU) beats fsync per file. */
const SYNCFS_ABOVE = 64
const LAYOUT_DIRS = new Set(['tmp', 'blobs', 'dirs', 'pathinfo', 'roots', 'locks', 'referrers'])

export class LocalRoot {
  readonly tmp: string
  readonly locks: StoreLocks
  private readonly sweepListeners: Array<() => void> = []
  private readonly upgradeSteps: Array<() => Promise<void>> = []
  private readonly madeDirs = new Set<string>()
  private readonly dirty = new Set<string>()
  private readonly temps = new Set<string>()
  private cleanupRegistered = false
  private version = 0
  private ready: Promise<void> | undefined

  constructor(readonly root: string) {
    this.tmp = path.join(root, 'tmp')
    this.locks = new StoreLocks(path.join(root, MARKER), () => {
      for (const l of this.sweepListeners) l()
    })
  }

  /** `fn` runs when a sweep may have deleted objects this process remembers as stored. */
  onSweep(fn: () => void): void {
    this.sweepListeners.push(fn)
  }

  /** `fn` runs before an older store is marked with the current version (it builds what the new version promises). */
  onUpgrade(fn: () => Promise<void>): void {
    this.upgradeSteps.push(fn)
  }

  /** Whether the store's marker promises a complete referrers index (read when opened or first written). */
  get indexed(): boolean {
    return this.version >= INDEXED_VERSION
  }

  objectPath(kind: 'blobs' | 'dirs', hex: string): string {
    return path.join(this.root, kind, 'b3', hex.slice(0, 2), hex)
  }

  pathInfoPath(hashPart: string): string {
    return path.join(this.root, 'pathinfo', hashPart)
  }

  /** Checks the format marker of an existing store; does not create anything. */
  async checkFormat(): Promise<boolean> {
    let text: string
    try {
      text = await fs.readFile(path.join(this.root, MARKER), 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new BackendError(`cannot read store at ${this.root}`, { cause: e })
      // Empty, or a store another process is creating right now (layout
      // folders come before the marker): initialise. Anything else is not ours.
      const entries: string[] = await fs.readdir(this.root).catch(() => [])
      // The marker may have appeared since we looked: another process finished creating the store.
      if (entries.includes(MARKER)) return this.checkFormat()
      if (entries.some((e) => !LAYOUT_DIRS.has(e))) throw new UsageError(`${this.root} is not a tvix-store directory (no ${MARKER})`)
      return false
    }
    let marker: { format?: string; version?: number }
    try {
      marker = JSON.parse(text)
    } catch {
      marker = {}
    }
    if (marker.format !== FORMAT.format || !READABLE_VERSIONS.includes(marker.version ?? -1)) {
      throw new UsageError(`store at ${this.root} has an unsupported format (${text.trim()}); this tvix-store reads versions ${READABLE_VERSIONS.join(', ')}`)
    }
    this.version = marker.version!
    return true
  }

  /** Creates the layout on first write (idempotent, safe with concurrent creators). */
  init(): Promise<void> {
    this.ready ??= (async () => {
      if (await this.checkFormat()) {
        this.locks.joinCreated()
        // Packs are new in version 2, the referrers index in 3: build what the new version
        // promises, then mark the store, before writing anything of our own.
        if (this.version < FORMAT.version) {
          for (const step of this.upgradeSteps) await step()
          await this.writeAtomic(path.join(this.root, MARKER), Buffer.from(JSON.stringify(FORMAT) + '\n'))
          await this.sync()
          this.version = FORMAT.version
        }
        return
      }
      await fs.mkdir(this.tmp, { recursive: true })
      for (const d of ['blobs/b3', 'dirs/b3', 'pathinfo', 'referrers']) await fs.mkdir(path.join(this.root, d), { recursive: true })
      // The marker itself goes in atomically; a concurrent creator writes the same bytes.
      await this.writeAtomic(path.join(this.root, MARKER), Buffer.from(JSON.stringify(FORMAT) + '\n'))
      await this.sync()
      this.version = FORMAT.version
      this.locks.joinCreated()
    })()
    return this.ready
  }

  /** A fresh temp file name; tracked until published or discarded, and removed if the process is interrupted. */
  tempPath(): string {
    if (this.temps.size === 0 && !this.cleanupRegistered) {
      onInterrupt(() => {
        for (const t of this.temps) fsSync.rmSync(t, { force: true })
      })
      this.cleanupRegistered = true
    }
    const t = path.join(this.tmp, StoreLocks.tempName())
    this.temps.add(t)
    return t
  }

  /** Removes a temp file that will not be published. */
  async discard(tmp: string): Promise<void> {
    await fs.rm(tmp, { force: true })
    this.temps.delete(tmp)
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
    if (files.length > SYNCFS_ABOVE && (await syncFilesystem(this.tmp))) return
    await Promise.all(files.map((f) => fsyncPath(f)))
  }

  /** temp file, write, fsync, rename. */
  async writeAtomic(final: string, data: Uint8Array): Promise<void> {
    await this.publish(await this.writeTemp(data), final)
  }

  /**
   * writeAtomic that never replaces: the temp file is hard-linked to its
   * final name (link(2) fails when the name exists), so of two writers
   * exactly one wins. False, and nothing written, if `final` existed.
   */
  async writeNew(final: string, data: Uint8Array): Promise<boolean> {
    const tmp = await this.writeTemp(data)
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
      throw e
    }
    await fh.close()
    return tmp
  }

  /** Moves a finished, fsynced temp file to its final name. */
  async publish(tmp: string, final: string): Promise<void> {
    // Synchronous: a rename is microseconds, an async one a thread-pool round trip.
    this.ensureParent(final)
    fsSync.renameSync(tmp, final)
    this.temps.delete(tmp)
    this.dirty.add(path.dirname(final))
    // Not yet reachable from a PathInfo: a sweep could take it until the session registers what needs it.
    this.locks.rely(final)
  }

  /** A short publishing step with sweeps excluded (StoreLocks.commit). */
  commit<T>(fn: () => Promise<T>): Promise<T> {
    return this.locks.commit(fn)
  }

  /** The current write session relies on the object at `file`, found stored, staying (StoreLocks.rely). */
  rely(file: string): void {
    this.locks.rely(file)
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

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p)
    return true
  } catch {
    return false
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
  } finally {
    await fh.close()
  }
}

/** syncfs(2) of the filesystem holding `p`, via coreutils (async: a daemon keeps serving); false if that failed. */
function syncFilesystem(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('sync', ['--file-system', p], { stdio: 'ignore' })
    child.once('error', () => resolve(false))
    child.once('exit', (code) => resolve(code === 0))
  })
}
