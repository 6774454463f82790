import { createHash, type Hash } from 'node:crypto'
import fs from 'node:fs'

/**
 * What a file tree looks like to lstat, as one digest: every entry's name
 * in NAR order, and for each file and symlink its device, inode, mode,
 * size, mtime and ctime. Any write to a file, chmod, rename, or entry added
 * or removed changes it: the kernel sets ctime on every change to an inode
 * and no user can set it back. So an unchanged digest means unchanged
 * contents, except for a change within the same tick of a coarse clock as
 * the recorded one (git's "racy" entries): `settledBefore` tells whether
 * every entry was last changed well before a given time.
 *
 * The import walk (ingest-fs.ts) feeds the same tokens in the same order
 * as fingerprintPath() does, from the stats it takes anyway.
 */
const LEAF = Buffer.from('l')

export class TreeFingerprint {
  private readonly hash: Hash = createHash('sha256')
  /** The latest mtime or ctime of any entry (ms since the epoch). */
  private newest = 0
  /** A leaf's numbers, hashed as their bytes: formatting them as text cost more than the lstat. */
  private readonly fields = new Float64Array(6)
  private readonly bytes = new Uint8Array(this.fields.buffer)

  /** The next entry of the directory being walked is called `name`. */
  name(name: Uint8Array): void {
    this.hash.update('n')
    this.hash.update(name)
    this.hash.update('\0')
  }

  directory(): void {
    this.hash.update('d\n')
  }

  endDirectory(): void {
    this.hash.update(')\n')
  }

  /** A file or symlink, as lstat (or fstat of it open) saw it. */
  leaf(st: fs.Stats): void {
    const f = this.fields
    f[0] = st.dev
    f[1] = st.ino
    f[2] = st.mode
    f[3] = st.size
    f[4] = st.mtimeMs
    f[5] = st.ctimeMs
    this.hash.update(LEAF)
    this.hash.update(this.bytes)
    this.newest = Math.max(this.newest, st.mtimeMs, st.ctimeMs)
  }

  /** Whether no entry changed at or after `time` (ms since the epoch). */
  settledBefore(time: number): boolean {
    return this.newest < time
  }

  digest(): string {
    return this.hash.digest('hex')
  }
}

/**
 * A folder's entries with their types, sorted bytewise by name (NAR order).
 * Names as latin1 strings, a byte a character (any bytes, exactly; their
 * order is the bytes' order): a Buffer each, held while the folder is
 * walked, is ~200 bytes more per entry of a folder of 100,000.
 */
export function listDir(p: Buffer): fs.Dirent[] {
  return fs.readdirSync(p, { encoding: 'latin1', withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
}

const SLASH = Buffer.from('/')

/**
 * The fingerprint of the tree at `fsPath` without reading any file: a
 * listing per folder and an lstat per file or symlink (folders are known
 * from their listing). Symlinks are not followed.
 */
export function fingerprintPath(fsPath: string): TreeFingerprint {
  const fp = new TreeFingerprint()
  // An explicit stack of open folders, as the import walk keeps: any depth works.
  const open: Array<{ path: Buffer; entries: fs.Dirent[]; next: number }> = []
  let p: Buffer | undefined = Buffer.from(fsPath)
  let listed: fs.Dirent | undefined
  for (;;) {
    if (p) {
      const st = listed?.isDirectory() ? undefined : fs.lstatSync(p)
      if (st && !st.isDirectory()) fp.leaf(st)
      else {
        fp.directory()
        open.push({ path: p, entries: listDir(p), next: 0 })
      }
      p = undefined
    }
    const top = open.at(-1)
    if (!top) return fp
    if (top.next < top.entries.length) {
      listed = top.entries[top.next++]!
      const name = Buffer.from(listed.name, 'latin1')
      fp.name(name)
      p = Buffer.concat([top.path, SLASH, name])
    } else {
      fp.endDirectory()
      open.pop()
    }
  }
}
