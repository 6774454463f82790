import { randomBytes } from 'node:crypto'
import fsSync from 'node:fs'
import path from 'node:path'
import type { TempRootKind, TempRoots } from '../../store/store.js'
import { HASH_PART, HEX64 } from './inventory.js'
import { isAlive, self, type StoreLocks } from './locks.js'

/**
 * Temp roots, as Nix's daemon keeps them: what a client connection was told
 * is stored, or sent, stays until the connection closes. Through a daemon
 * an upload is several calls (blob Stats and Puts, a Directory Put, then
 * the PathInfo Put), each its own write session, so without them the only
 * protection between calls is gc's --grace: a copy slower than the grace
 * period, or one relying on an old unreachable object it found present,
 * has its PathInfo refused. A lease per connection needs no clock: a
 * client that stalls is dropped by the daemon's idle timeout, which
 * releases its roots, and a daemon killed -9 leaves files whose owner is
 * dead, which gc ignores and removes.
 *
 *   locks/temproots-<pid>-<start>-<n>   one line per root: "blob <hex>", "dir <hex>", "pathinfo <hash part>"
 *
 * A root is written inside a commit (sweeps excluded) after the object was
 * found present, so a sweep either ran before (the object is gone, the
 * client hears "absent" and sends it) or reads the root.
 */
const PREFIX = 'temproots-'
/** Random per process, made by the first writer: a read never loads node:crypto. */
let instance: string | undefined
let counter = 0

export class LocalTempRoots implements TempRoots {
  private readonly dir: string
  private readonly file: string
  private readonly held = new Set<string>()
  private released = false

  /** `locksDir`: beside the lock tokens, which name their owners the same way (LocalRoot.locksDir). */
  constructor(
    locksDir: string,
    private readonly locks: StoreLocks,
  ) {
    this.dir = locksDir
    this.file = path.join(this.dir, `${PREFIX}${self.pid}-${self.start}-${(instance ??= randomBytes(4).toString('hex'))}${(counter++).toString(16)}`)
  }

  async holdIf(kind: TempRootKind, name: string, present: () => Promise<boolean>): Promise<boolean> {
    const line = `${kind} ${name}`
    // Held already: gc keeps it, so the lookup needs no commit (a client Stats and Gets the same objects again).
    if (this.held.has(line)) return present()
    return this.locks.commit(undefined, async () => {
      if (!(await present())) return false
      if (!this.released) {
        fsSync.mkdirSync(this.dir, { recursive: true })
        fsSync.appendFileSync(this.file, `${line}\n`)
        this.held.add(line)
      }
      return true
    })
  }

  async holdAll(kind: TempRootKind, names: string[]): Promise<void> {
    const lines = names.map((n) => `${kind} ${n}`).filter((l) => !this.held.has(l))
    if (lines.length === 0 || this.released) return
    // Inside a commit, as every root: no sweep reads the file while it grows.
    await this.locks.commit(undefined, async () => {
      if (this.released) return
      fsSync.mkdirSync(this.dir, { recursive: true })
      fsSync.appendFileSync(this.file, `${lines.join('\n')}\n`)
      for (const l of lines) this.held.add(l)
    })
  }

  release(): void {
    this.released = true
    if (this.held.size > 0) fsSync.rmSync(this.file, { force: true })
  }
}

/** The temp roots of live processes, and the files of dead ones (left by a kill, for gc to remove). */
export function readTempRoots(locksDir: string): { live: Array<{ kind: TempRootKind; name: string }>; stale: string[] } {
  const dir = locksDir
  const live: Array<{ kind: TempRootKind; name: string }> = []
  const stale: string[] = []
  let names: string[]
  try {
    names = fsSync.readdirSync(dir)
  } catch {
    return { live, stale }
  }
  for (const n of names) {
    const m = /^temproots-(\d+)-(\d+)-[0-9a-f]+$/.exec(n)
    if (!m) continue
    const file = path.join(dir, n)
    if (!isAlive({ pid: Number(m[1]), start: Number(m[2]) })) {
      stale.push(file)
      continue
    }
    let text: string
    try {
      text = fsSync.readFileSync(file, 'utf8')
    } catch {
      continue // released meanwhile
    }
    for (const line of text.split('\n')) {
      const [kind, name = ''] = line.split(' ')
      if ((kind === 'blob' || kind === 'dir') && HEX64.test(name)) live.push({ kind, name })
      else if (kind === 'pathinfo' && HASH_PART.test(name)) live.push({ kind, name })
    }
  }
  return { live, stale }
}
