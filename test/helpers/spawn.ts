/**
 * Every process a test starts goes through spawnOwned: it runs in its own
 * process group (with whatever it starts in turn, a syncfs helper, a
 * daemon's children) and this test process owns it. Owned groups still
 * running are killed when the file's tests are over (a top-level `after`,
 * so a test that failed or was cancelled midway cannot leave a daemon that
 * keeps the run alive), at exit, and on SIGINT/SIGTERM/SIGHUP (which then
 * exit through the exit hooks, so tmp-root.ts still removes the temp dir).
 */
import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import { after } from 'node:test'

export interface ProcessResult {
  code: number
  stdout: Buffer
  stderr: string
}

const owned = new Set<ChildProcess>()
/** When an owned process last exited: what whileProgressing counts as progress, besides its callback. */
let lastExit = Date.now()

/** `spawn`, with the child leading its own process group, owned until it exits. */
export function spawnOwned(cmd: string, args: string[], opts: SpawnOptions): ChildProcess {
  const child = spawn(cmd, args, { ...opts, detached: true })
  if (child.pid !== undefined) {
    owned.add(child)
    child.once('exit', () => {
      owned.delete(child)
      lastExit = Date.now()
    })
  }
  return child
}

/** Signals a child's whole process group (default SIGKILL); nothing if it is gone. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // exited meanwhile
  }
}

/** Kills every owned group still running; returns how many there were. */
export function killOwned(): number {
  const n = owned.size
  for (const c of owned) killGroup(c)
  owned.clear()
  return n
}

after(() => {
  const n = killOwned()
  if (n > 0) console.log(`killed ${n} process group(s) still running when the tests ended`)
})
// Before tmp-root.ts's hook removes the temp dir the children may still write to.
process.prependListener('exit', killOwned)
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    killOwned()
    process.exit(128 + os.constants.signals[sig])
  })
}

/** CPU time (user + system, clock ticks) a process has used; undefined once it is gone or off Linux. */
export function cpuTicks(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(f[11]) + Number(f[12])
  } catch {
    return undefined
  }
}

/** Resident memory of a process, now (VmRSS) or its peak so far (VmHWM), in KiB; undefined once it is gone or off Linux. */
export function rssKiB(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : undefined
  } catch {
    return undefined // not Linux, or the process is gone
  }
}

/**
 * Resolves true once process `pid` has used no CPU for `idleMs`: blocked
 * (on a FIFO, a lock), not merely slow, since a runnable process gets some
 * CPU within seconds however loaded the machine. Resolves false when
 * `done` settles first.
 */
export async function blockedFor(pid: number, idleMs: number, done: Promise<unknown>): Promise<boolean> {
  let finished = false
  const settled = done.then(
    () => (finished = true),
    () => (finished = true),
  )
  let ticks = cpuTicks(pid)
  let since = Date.now()
  while (!finished) {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([new Promise((r) => (timer = setTimeout(r, 200))), settled])
    clearTimeout(timer)
    if (finished) break
    const now = cpuTicks(pid)
    if (now === undefined) return false
    if (now !== ticks) [ticks, since] = [now, Date.now()]
    else if (Date.now() - since >= idleMs) return true
  }
  return false
}

/** Runs a command to completion, collecting its output; never throws on a non-zero exit. */
export function runProcess(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: Uint8Array | string; cwd?: string } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawnOwned(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout!.on('data', (c: Buffer) => out.push(c))
    child.stderr!.on('data', (c: Buffer) => err.push(c))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }))
    child.stdin!.on('error', () => {})
    child.stdin!.end(opts.input ?? '')
  })
}

/**
 * A guard for long tests that judges by progress, not the wall clock:
 * progress is a process this file started exiting, or `fn` calling
 * `progress()`; only if there was none for `idleMs` does the guard kill
 * every owned process (so what `fn` awaits settles) and fail. A loaded
 * machine makes each step slower, not silent.
 */
export async function whileProgressing<T>(idleMs: number, fn: (progress: () => void) => Promise<T>): Promise<T> {
  let last = Date.now()
  let stalled: Error | undefined
  let timer: NodeJS.Timeout | undefined
  const check = () => {
    const idle = Date.now() - Math.max(last, lastExit)
    if (idle < idleMs) {
      timer = setTimeout(check, idleMs - idle)
      return
    }
    stalled = new Error(`nothing progressed for ${Math.round(idle / 1000)} s: killed ${killOwned()} process group(s)`)
  }
  timer = setTimeout(check, idleMs)
  try {
    const r = await fn(() => (last = Date.now()))
    if (stalled) throw stalled
    return r
  } catch (e) {
    throw stalled ?? e
  } finally {
    clearTimeout(timer)
  }
}

/** How long the heavy tests let nothing progress before they fail: no single step takes minutes, however loaded the machine. */
export const STALL_MS = 5 * 60_000

/** A test body run under whileProgressing: `test(name, failIfStalled(async (t) => …))`. */
export function failIfStalled<C>(fn: (t: C) => Promise<void>, idleMs = STALL_MS): (t: C) => Promise<void> {
  return (t) => whileProgressing(idleMs, () => fn(t))
}
