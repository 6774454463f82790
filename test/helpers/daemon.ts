import type { ChildProcess } from 'node:child_process'
import { BIN, REPO } from './cli.js'
import { blockedFor, killGroup, spawnOwned } from './spawn.js'

export { freePort } from './free-port.js'

export interface RunningDaemon {
  url: string
  proc: ChildProcess
  /** Everything the daemon wrote to stderr so far. */
  log(): string
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>
}

/** A daemon still starting that used no CPU for this long is stuck, however loaded the machine. */
const START_STALL_MS = 60_000

/**
 * Starts the built CLI's daemon and waits for its "serving" line. The
 * process is owned (spawn.ts): it never outlives the test file. The wait
 * is judged by progress, not the clock: it fails only if the daemon used
 * no CPU for a minute (or exited), and then kills its process group.
 */
export async function startDaemon(store: string, listen: string, extraArgs: string[] = []): Promise<RunningDaemon> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>), NO_COLOR: '1' }
  delete env.TVIX_STORE
  delete env.NIX_STORE_DIR
  const proc = spawnOwned(process.execPath, [BIN, 'daemon', '--store', store, '--listen', listen, ...extraArgs], { cwd: REPO, env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  const served = new Promise<string>((resolve, reject) => {
    proc.stderr!.on('data', () => {
      const m = / at (grpc\+\S+)/.exec(stderr)
      if (m) resolve(m[1]!)
    })
    exited.then((code) => reject(new Error(`daemon exited with ${code}: ${stderr}`)))
  })
  // Watched only until it serves: a serving daemon may idle.
  if (await blockedFor(proc.pid!, START_STALL_MS, served)) {
    killGroup(proc)
    throw new Error(`daemon used no CPU for ${START_STALL_MS / 1000} s without serving: ${stderr}`)
  }
  const url = await served
  return {
    url,
    proc,
    log: () => stderr,
    stop: async () => {
      proc.kill('SIGTERM')
      return exited
    },
  }
}
