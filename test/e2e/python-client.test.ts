/**
 * An independent client: the Python unittest suite in test/python (Debian's
 * python3-grpcio + python3-grpc-tools, stubs generated from protos/ at test
 * time) against the built daemon, once over TCP and once over a unix socket,
 * each with a fresh store. Skipped, with the reason on its own line, when the
 * system Python cannot import grpc and grpc_tools.
 *
 * Run: npm run build && node --import tsx --test test/e2e/python-client.test.ts
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { BIN, REPO } from '../helpers/cli.js'
import { runProcess } from '../helpers/spawn.js'

/** Debian's interpreter: the one apt's python3-grpcio installs into (not a pyenv shim on PATH). */
const PYTHON = '/usr/bin/python3'
const SUITE = path.join(REPO, 'test/python')

function skipReason(): string | undefined {
  if (!fs.existsSync(PYTHON)) return `${PYTHON} not found`
  const r = spawnSync(PYTHON, ['-c', 'import grpc, grpc_tools.protoc, google.protobuf'], { encoding: 'utf8', env: pythonEnv() })
  if (r.status === 0) return undefined
  const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').pop()
  return `${why} (apt-get install python3-grpcio python3-grpc-tools)`
}

/** The environment without anything that would point the system Python at another installation. */
function pythonEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>) }
  for (const k of ['PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION']) delete env[k]
  env.PYTHONDONTWRITEBYTECODE = '1' // no __pycache__ in test/python
  return Object.assign(env, extra)
}

const SKIP = skipReason()
if (SKIP) console.log(`python client suite skipped: ${SKIP}`)

interface Daemon {
  proc: ChildProcess
  /** host:port or unix:/path, as grpcio takes it. */
  target: string
  log(): string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** Starts the built CLI's daemon and waits for its "serving … at <url>" line. */
async function startDaemon(store: string, listen: string): Promise<Daemon> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>), NO_COLOR: '1' }
  delete env.TVIX_STORE
  delete env.NIX_STORE_DIR
  const proc = spawn(process.execPath, [BIN, 'daemon', '--store', store, '--listen', listen], {
    cwd: REPO,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  )
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not report serving within 30 s:\n${stderr}`)), 30_000)
    const check = () => {
      const m = /serving .* at (grpc\+(?:http|unix):\/\/\S+)/.exec(stderr)
      if (m) {
        clearTimeout(timer)
        resolve(m[1]!)
      }
    }
    proc.stderr!.on('data', check)
    void exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`daemon exited (${code ?? signal}) before serving:\n${stderr}`))
    })
  })
  // grpc+http://127.0.0.1:PORT -> 127.0.0.1:PORT; grpc+unix:///abs/path -> unix:/abs/path
  const target = url.startsWith('grpc+http://') ? url.slice('grpc+http://'.length) : `unix:${url.slice('grpc+unix://'.length)}`
  return { proc, target, log: () => stderr, exited }
}

/** SIGTERM, then the exit status within `ms` (undefined if it did not exit). */
async function stopDaemon(d: Daemon, ms = 10_000) {
  d.proc.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))
  const res = await Promise.race([d.exited, timeout])
  clearTimeout(timer)
  return res
}

describe('independent Python gRPC client (grpcio) against the daemon', { skip: SKIP }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-pyclient-'))
  const running: Daemon[] = []
  after(() => {
    for (const d of running) if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL')
    fs.rmSync(root, { recursive: true, force: true })
  })

  const transports = [
    // Port 0: the daemon binds a free port itself and reports it, so there is no race for it.
    { name: 'TCP 127.0.0.1', listen: '127.0.0.1:0', socket: undefined },
    { name: 'unix socket', listen: `unix:${path.join(root, 'd.sock')}`, socket: path.join(root, 'd.sock') },
  ]
  for (const t of transports) {
    test(`python3 -m unittest test_daemon over ${t.name}`, async () => {
      const store = path.join(root, `store-${t.socket ? 'unix' : 'tcp'}`)
      const d = await startDaemon(store, t.listen)
      running.push(d)
      if (t.socket) assert.equal(d.target, `unix:${t.socket}`)
      else assert.match(d.target, /^127\.0\.0\.1:[1-9]\d*$/)

      const py = await runProcess(PYTHON, ['-m', 'unittest', '-v', 'test_daemon'], {
        cwd: SUITE,
        env: pythonEnv({ TVIX_DAEMON: d.target }),
      })
      const output = `${py.stdout.toString()}${py.stderr}`
      if (py.code !== 0) console.log(output)
      assert.equal(py.code, 0, `python suite failed (exit ${py.code}):\n${output}\n--- daemon log ---\n${d.log()}`)
      assert.match(py.stderr, /^OK\b/m, output)
      assert.doesNotMatch(py.stderr, /skipped 'set TVIX_DAEMON/, 'the suite ran against the daemon')

      const res = await stopDaemon(d)
      assert.ok(res, `daemon did not exit within 10 s of SIGTERM:\n${d.log()}`)
      assert.deepEqual(res, { code: 0, signal: null }, d.log())
      assert.match(d.log(), /SIGTERM: stopping/)
      assert.match(d.log(), /daemon stopped/)
      if (t.socket) assert.ok(!fs.existsSync(t.socket), 'socket file removed on shutdown')
    })
  }
})
