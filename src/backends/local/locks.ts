import { randomBytes } from 'node:crypto'
import fsSync from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ConflictError, TimeoutError } from '../../errors.js'

/**
 * Writers and the garbage collector exclude each other through token
 * files in `locks/`, one per process and role:
 *
 *   locks/w-<pid>-<start>-<n>    a process inside a commit (publishing objects)
 *   locks/gc-<pid>-<start>-<n>   a process sweeping (gc, verify --repair)
 *   locks/epoch              changed by every sweep that deleted something
 *
 * Write sessions are optimistic: reading input, hashing and writing temp
 * files hold no token, so a stalled writer (an upload that never ends, a
 * pipe that never closes) cannot hold gc off, and through gc every other
 * writer. A session records what it relies on (objects it found stored
 * and skipped writing, objects it published) and the epoch it started
 * in. Only its commits, short steps that rename finished files into place
 * and never wait for input, take a writer token: a commit creates its
 * token, then looks for live gc tokens; a sweeper creates its token, then
 * waits until no live writer token is left. Each creates before it looks,
 * so at least one of them sees the other. Inside a commit, if the epoch
 * moved since the session last checked, every object it relies on must
 * still exist, or the session fails with ConflictError and registers
 * nothing: what a PathInfo needs is therefore present when it is written.
 *
 * A session is an explicit object (WriteSession), handed to the code that
 * writes: a local store bound to it (LocalStore.writeSession) records
 * there what its reads find and its commits publish. Concurrent sessions
 * in one process (a daemon's calls) each have their own. Not an
 * AsyncLocalStorage: that turns on Node's promise hooks for the whole
 * process, which made every promise of an import dearer (5-9 % of its CPU).
 *
 * A token names its process by pid and start time (/proc), so the token
 * of a killed process is recognised as stale and ignored; no lock is ever
 * taken over, so there is no takeover race. A sweeper waits for commits
 * at most `maxWaitMs` (a commit that takes longer belongs to a stopped or
 * hung process) and then gives up, so it never holds writers off
 * unboundedly either. Node has no flock(2); files and liveness checks
 * need nothing beyond the filesystem.
 */

const WRITER = 'w-'
const SWEEPER = 'gc-'
const EPOCH = 'epoch'
const BACKOFF_MS = [5, 20, 50, 100, 200]
/** Random per process: temp names stay unique even if a pid and start time repeat (another container, a reboot). Made on first use: a read never loads node:crypto. */
let tempPrefix: string | undefined
let tempCounter = 0

export interface ProcessId {
  pid: number
  /** Start time in clock ticks since boot (/proc/PID/stat field 22); 0 where /proc is missing. */
  start: number
}

function startTime(pid: number): number | undefined {
  let stat: string
  try {
    stat = fsSync.readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ESRCH') return undefined
    return 0
  }
  // The command name (field 2) may hold spaces and parentheses: count from its closing one.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[19]) || 0
}

export const self: ProcessId = { pid: process.pid, start: startTime(process.pid) ?? 0 }

/** Whether the process a token names still runs (the same process, not a reuse of its pid). */
export function isAlive(id: ProcessId): boolean {
  if (id.pid === process.pid) return id.start === self.start
  const start = startTime(id.pid)
  if (start === undefined) return false
  if (start !== 0 && id.start !== 0) return start === id.start
  try {
    process.kill(id.pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** The process a token name belongs to, or undefined for other names. */
export function ownerOf(name: string): { role: 'writer' | 'sweeper'; id: ProcessId } | undefined {
  const m = /^(w|gc)-(\d+)-(\d+)-[0-9a-f]+$/.exec(name)
  if (!m) return undefined
  return { role: m[1] === 'w' ? 'writer' : 'sweeper', id: { pid: Number(m[2]), start: Number(m[3]) } }
}

/**
 * One write session: what it relies on, checked at each of its commits if
 * a sweep ran since. Made by StoreLocks.openSession; whoever writes for the
 * session carries it (a store view bound to it), so no ambient context is
 * needed to find it.
 */
export class WriteSession {
  /** Object files found stored (and so not written) or published by the session. */
  readonly relied = new Set<string>()
  /** Commits of this session under way: a commit that starts meanwhile (nested, or concurrent within the session) joins them. */
  committing = 0

  /** `epoch`: the epoch in which everything in `relied` was last known to exist. */
  constructor(public epoch: string) {}

  /** The session relies on `file` (an object it found stored, or published) staying until it commits. */
  rely(file: string): void {
    this.relied.add(file)
  }
}

/** How long a sweeper waits for commits before giving up (a commit takes milliseconds). */
export const DEFAULT_MAX_WAIT_MS = 2 * 60_000

export class StoreLocks {
  private writers = 0
  /**
   * The epoch when this process last looked. Read when the store is
   * opened, before anything is cached: reads outside a session (a daemon's
   * Stat) may fill caches before the first session, and a sweep in
   * between must still be noticed when that session starts.
   */
  private lastEpoch: string
  /** Two stores opened on one directory in one process keep separate tokens (made on first use, as tempPrefix). */
  private instanceId: string | undefined
  private get instance(): string {
    return (this.instanceId ??= randomBytes(4).toString('hex'))
  }

  /** `onEpoch` runs when a sweep deleted objects since this process last looked (caches of what exists are stale). */
  constructor(
    /** The store's locks/ folder (LocalRoot.locksDir). */
    private readonly dir: string,
    /** The store's format marker: no marker, no store. */
    private readonly marker: string,
    private readonly onEpoch: () => void,
  ) {
    // From the moment the store is opened: what this process caches before its first
    // write session (a daemon's chunk index, loaded by a Stat) may predate a sweep.
    this.lastEpoch = this.readEpoch()
  }

  /** A temp file name carrying its owner, so gc can tell a killed writer's leftovers from live ones. */
  static tempName(): string {
    // Unique within the process by the counter, across processes by pid and start time; no random bytes per file.
    return `${self.pid}-${self.start}-${(tempPrefix ??= randomBytes(4).toString('hex'))}${(tempCounter++).toString(16)}`
  }

  /** Whether a temp file's owner still runs; true for names that are not ours to judge. */
  static tempOwnerAlive(name: string): boolean {
    const m = /^(\d+)-(?:(\d+)-)?[0-9a-f]+$/.exec(name)
    return m ? isAlive({ pid: Number(m[1]), start: Number(m[2] ?? 0) }) : true
  }

  private token(prefix: string): string {
    return path.join(this.dir, `${prefix}${self.pid}-${self.start}-${this.instance}`)
  }

  /** The token files in locks/, with their owners. */
  private tokens(): Array<{ file: string; prefix: string; id: ProcessId }> {
    let names: string[]
    try {
      names = fsSync.readdirSync(this.dir)
    } catch {
      return []
    }
    return names.flatMap((n) => {
      const o = ownerOf(n)
      return o ? [{ file: path.join(this.dir, n), prefix: o.role === 'writer' ? WRITER : SWEEPER, id: o.id }] : []
    })
  }

  private live(prefix: string): ProcessId[] {
    return this.tokens().filter((t) => t.prefix === prefix && isAlive(t.id)).map((t) => t.id)
  }

  private create(file: string): void {
    fsSync.mkdirSync(this.dir, { recursive: true })
    fsSync.writeFileSync(file, '')
  }

  /** Notices a sweep since this process last looked: caches of what exists are dropped. */
  private observeEpoch(): string {
    const epoch = this.readEpoch()
    if (epoch !== this.lastEpoch) this.onEpoch()
    this.lastEpoch = epoch
    return epoch
  }

  /**
   * A new write session. It holds no token: gc may sweep while it reads
   * its input. What it relies on is recorded (WriteSession.rely) and
   * checked by its commits.
   */
  openSession(): WriteSession {
    return new WriteSession(this.observeEpoch())
  }

  /** Whether an object a session relies on (rely) is still stored: its file exists, unless the object graph says otherwise (a bundle member). */
  stillThere: (relied: string) => boolean = (f) => fsSync.existsSync(f)

  /**
   * Runs `fn`, a short step that publishes objects, with sweeps excluded.
   * If a sweep deleted anything since `session` last checked, every
   * object it relies on must still be there (ConflictError if not).
   * `fn` must not wait for input: a sweeper waits for it. A commit of a
   * session that is committing already joins it: the token is held and
   * the check made, and no sweep can start before both end. Without a
   * session (a temp root, a write outside any session) there is nothing
   * to check; such a commit must not start inside another commit (it
   * would wait for a sweeper that waits for the outer one).
   */
  async commit<T>(session: WriteSession | undefined, fn: () => Promise<T>): Promise<T> {
    if (session && session.committing > 0) {
      this.writers++
      session.committing++
      try {
        return await fn()
      } finally {
        session.committing--
        this.leave()
      }
    }
    await this.enter()
    try {
      const epoch = this.observeEpoch()
      if (session && epoch !== session.epoch) {
        for (const f of session.relied) {
          if (!this.stillThere(f)) {
            throw new ConflictError(`the store was garbage-collected while this write was under way (${path.relative(path.dirname(this.marker), f)} is gone); nothing was registered, run it again`)
          }
        }
        session.epoch = epoch
      }
      if (session) session.committing++
      try {
        return await fn()
      } finally {
        if (session) session.committing--
      }
    } finally {
      this.leave()
    }
  }

  private async enter(): Promise<void> {
    // No store (no marker): nothing to sweep. LocalRoot.commit creates the store before
    // it commits, so this is a store removed from under us; its writes will fail.
    if (!fsSync.existsSync(this.marker)) {
      this.writers++
      return
    }
    for (let attempt = 0; ; attempt++) {
      if (this.writers++ === 0) this.create(this.token(WRITER))
      if (this.live(SWEEPER).length === 0) break
      this.leave()
      await sleep(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!)
    }
  }

  private leave(): void {
    if (--this.writers === 0) fsSync.rmSync(this.token(WRITER), { force: true })
  }

  private readEpoch(): string {
    try {
      return fsSync.readFileSync(path.join(this.dir, EPOCH), 'utf8')
    } catch {
      return ''
    }
  }

  /**
   * Runs `fn` with every writer excluded: announces the sweep, then waits
   * for the commits already under way to end (`onWait` hears who is waited
   * for, once per change). Commits are short; one still running after
   * `maxWaitMs` belongs to a stopped or hung process, and the sweep gives
   * up (TimeoutError) rather than hold every writer off behind it. Sweeps
   * do not exclude each other: each deletes only what it found unreachable
   * from everything present, and writers are held off while any sweep runs.
   */
  async exclusive<T>(fn: () => Promise<T>, opts: { onWait?: (writers: ProcessId[]) => void; maxWaitMs?: number; signal?: AbortSignal } = {}): Promise<T> {
    // No store: nothing to sweep, and nothing to create.
    if (!fsSync.existsSync(this.marker)) return fn()
    const maxWaitMs = opts.maxWaitMs ?? DEFAULT_MAX_WAIT_MS
    const token = this.token(SWEEPER)
    this.create(token)
    try {
      const started = Date.now()
      let reported = ''
      for (let attempt = 0; ; attempt++) {
        const writers = this.live(WRITER)
        if (writers.length === 0) break
        opts.signal?.throwIfAborted()
        if (Date.now() - started > maxWaitMs) {
          throw new TimeoutError(
            `gave up after waiting ${Math.round((Date.now() - started) / 1000)} s for a commit of process ${writers.map((w) => w.pid).join(', ')} to end (stopped or hung?); nothing was deleted`,
          )
        }
        const key = writers.map((w) => w.pid).join(',')
        if (key !== reported) opts.onWait?.(writers)
        reported = key
        await sleep(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!)
      }
      return await fn()
    } finally {
      fsSync.rmSync(token, { force: true })
    }
  }

  /** Marks that objects were deleted: writers drop what they cached about which objects exist. */
  bumpEpoch(): void {
    const tmp = path.join(this.dir, `.epoch-${randomBytes(6).toString('hex')}`)
    fsSync.writeFileSync(tmp, `${Date.now()}-${randomBytes(6).toString('hex')}`)
    fsSync.renameSync(tmp, path.join(this.dir, EPOCH))
    this.onEpoch()
  }

  /** Token files of processes that no longer run (left by a kill). */
  staleTokens(): string[] {
    return this.tokens().filter((t) => !isAlive(t.id)).map((t) => t.file)
  }
}
