import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseBasename, type StorePath } from '../store/store-path.js'

/**
 * What store path an import of a tree gave, and what the tree looked like
 * to lstat then (tree-fingerprint.ts), kept per user in
 * `$XDG_CACHE_HOME/tvix-store/imports/` (else `~/.cache/…`). Importing a
 * tree unchanged since lists and lstat's it instead of reading and hashing
 * every byte, as git's index spares `git status` reading unchanged files.
 * The store still decides: a path it no longer has is imported afresh.
 *
 * An entry maps a fingerprint to a store path, so whoever can write the
 * folder could make an import print a wrong one: a folder or entry not
 * owned by this user, or writable by others, is ignored. Losing or
 * corrupting an entry costs one full import, nothing else.
 */
export class ImportCache {
  private constructor(private readonly dir: string) {}

  /** The cache of the user running this process. */
  static forUser(env = process.env): ImportCache {
    const xdg = env.XDG_CACHE_HOME
    const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache')
    return new ImportCache(path.join(base, 'tvix-store', 'imports'))
  }

  /** The entry for importing `source` as `name` into the store `scope` (a local store's folder or a URL) under `storeDir`. */
  lookup(key: ImportKey): { fingerprint: string; path: StorePath } | undefined {
    try {
      if (!this.trusted(fs.lstatSync(this.dir))) return undefined
      const fd = fs.openSync(this.file(key), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
      try {
        if (!this.trusted(fs.fstatSync(fd))) return undefined
        const entry = JSON.parse(fs.readFileSync(fd, 'utf8')) as { fingerprint?: unknown; path?: unknown }
        if (typeof entry.fingerprint !== 'string' || typeof entry.path !== 'string') return undefined
        const storePath = parseBasename(entry.path)
        return storePath.name === key.name ? { fingerprint: entry.fingerprint, path: storePath } : undefined
      } finally {
        fs.closeSync(fd)
      }
    } catch {
      // Absent, unreadable or malformed: the import reads the tree.
      return undefined
    }
  }

  /** Records what an import gave (best effort: a cache that cannot be written is no failure of the import). */
  record(key: ImportKey, fingerprint: string, storeBasename: string): void {
    const file = this.file(key)
    const tmp = `${file}.${process.pid}.tmp`
    try {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 })
      if (!this.trusted(fs.lstatSync(this.dir))) return
      fs.writeFileSync(tmp, JSON.stringify({ fingerprint, path: storeBasename }) + '\n', { mode: 0o600 })
      fs.renameSync(tmp, file)
      if (Math.random() < 1 / PRUNE_ONE_IN) this.prune()
    } catch {
      fs.rmSync(tmp, { force: true })
    }
  }

  /** Keeps the newest KEEP entries once there are more than MAX: a user importing from ever new temp folders leaves one each. */
  private prune(): void {
    const names = fs.readdirSync(this.dir)
    if (names.length <= MAX_ENTRIES) return
    const aged = names.flatMap((n) => {
      try {
        return [{ n, t: fs.lstatSync(path.join(this.dir, n)).mtimeMs }]
      } catch {
        return []
      }
    })
    aged.sort((a, b) => b.t - a.t)
    for (const { n } of aged.slice(KEEP_ENTRIES)) fs.rmSync(path.join(this.dir, n), { force: true })
  }

  private trusted(st: fs.Stats): boolean {
    return st.uid === process.getuid?.() && (st.mode & 0o022) === 0 && (st.isDirectory() || st.isFile())
  }

  private file(key: ImportKey): string {
    const id = createHash('sha256').update(JSON.stringify([key.scope, key.storeDir, key.source, key.name])).digest('hex')
    return path.join(this.dir, id.slice(0, 40))
  }
}

export interface ImportKey {
  /** The store imported into: a local store's folder, or the URL of its PathInfo service. */
  scope: string
  storeDir: string
  /** The absolute path imported. */
  source: string
  name: string
}

const MAX_ENTRIES = 4096
const KEEP_ENTRIES = 3072
const PRUNE_ONE_IN = 64
