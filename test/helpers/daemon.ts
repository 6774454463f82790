import { type ChildProcess, spawn } from 'node:child_process'
import net from 'node:net'
import { BIN, REPO } from './cli.js'

export interface RunningDaemon {
  url: string
  proc: ChildProcess
  /** Everything the daemon wrote to stderr so far. */
  log(): string
  /** SIGTERM and wait; resolves with the exit code. */
  stop(): Promise<number | null>
}

/** A free TCP port on loopback (bound and released; good enough for tests). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

/** Starts the built CLI's daemon and waits for its "serving" line. */
export async function startDaemon(store: string, listen: string, extraArgs: string[] = []): Promise<RunningDaemon> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>), NO_COLOR: '1' }
  delete env.TVIX_STORE
  const proc = spawn(process.execPath, [BIN, 'daemon', '--store', store, '--listen', listen, ...extraArgs], { cwd: REPO, env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  // Generous: on a loaded machine start-up can take many seconds. On failure the process is killed,
  // or its open pipes would keep the test process alive.
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL')
      reject(new Error(`daemon did not start within 2 minutes: ${stderr}`))
    }, 120_000)
    proc.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString()
      const m = / at (grpc\+\S+)/.exec(stderr)
      if (m) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    })
    exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`daemon exited with ${code}: ${stderr}`))
    })
  })
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
