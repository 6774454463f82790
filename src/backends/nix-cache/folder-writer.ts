import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import { rmSync } from 'node:fs'
import path from 'node:path'
import { BackendError, NoSpaceError, isNoSpace, systemMessage } from '../../errors.js'
import { onInterrupt } from '../../util/interrupt.js'
import type { CacheWriter } from './cache-writer.js'

/** Temp files of writes in progress, removed if the process is interrupted. */
const temps = new Set<string>()
onInterrupt(() => {
  for (const t of temps) rmSync(t, { force: true })
})

/** A temp file name inside `dir`, removed on interrupt until `forget`: dotted, so no reader takes it for a cache file. */
export function tempIn(dir: string): { file: string; forget(): void } {
  const file = path.join(dir, `.tvix-tmp-${process.pid}-${randomBytes(6).toString('hex')}`)
  temps.add(file)
  return { file, forget: () => temps.delete(file) }
}

/**
 * A binary cache in a folder (`nix+file:///dir`), written as Nix's
 * `file://` store writes one: NARs in `nar/`, narinfos and nix-cache-info
 * at the top, each written to a temp file in the folder, fsynced and
 * renamed into place.
 */
export class FolderCacheWriter implements CacheWriter {
  readonly display: string

  constructor(private readonly dir: string) {
    this.display = `nix+file://${dir}`
  }

  async spoolDir(): Promise<string> {
    await this.io('create', this.dir, () => fs.mkdir(path.join(this.dir, 'nar'), { recursive: true }))
    return this.dir
  }

  async exists(name: string): Promise<boolean> {
    return (await this.io('stat', name, () => fs.stat(path.join(this.dir, name)).catch(absent))) !== undefined
  }

  async readText(name: string): Promise<string | undefined> {
    return this.io('read', name, () => fs.readFile(path.join(this.dir, name), 'utf8').catch(absent))
  }

  async putFile(name: string, file: string): Promise<void> {
    await this.io('write', name, async () => {
      const fh = await fs.open(file, 'r+')
      try {
        await fh.sync()
      } finally {
        await fh.close()
      }
      await fs.rename(file, path.join(this.dir, name))
    })
  }

  async putText(name: string, text: string): Promise<void> {
    const tmp = tempIn(await this.spoolDir())
    try {
      await this.io('write', name, async () => {
        await fs.writeFile(tmp.file, text, { flush: true })
        await fs.rename(tmp.file, path.join(this.dir, name))
      })
    } finally {
      await fs.rm(tmp.file, { force: true })
      tmp.forget()
    }
  }

  async close(): Promise<void> {}

  /** Runs a filesystem step, naming the cache and the file in its error. */
  private async io<T>(what: string, name: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (e) {
      const err = e as NodeJS.ErrnoException
      const where = `${name === this.dir ? 'the binary cache folder' : name} in ${this.display}`
      if (isNoSpace(err)) throw new NoSpaceError(`no space left on device while writing ${where}`, { cause: e })
      throw new BackendError(`cannot ${what} ${where}: ${err.code ? systemMessage(err) : err.message}`, { cause: e })
    }
  }
}

/** ENOENT as undefined: the cache does not have the file. */
function absent(e: NodeJS.ErrnoException): undefined {
  if (e.code === 'ENOENT') return undefined
  throw e
}
