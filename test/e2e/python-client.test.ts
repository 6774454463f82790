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
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { REPO } from '../helpers/cli.js'
import { startDaemon } from '../helpers/daemon.js'
import { runProcess } from '../helpers/spawn.js'
import { makeTlsFiles, opensslMissing } from '../helpers/tls.js'

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

/** host:port or unix:/path, as grpcio takes a daemon's URL. */
function grpcioTarget(url: string): string {
  // grpc+http(s)://127.0.0.1:PORT -> 127.0.0.1:PORT; grpc+unix:///abs/path -> unix:/abs/path
  return url.startsWith('grpc+unix://') ? `unix:${url.slice('grpc+unix://'.length)}` : url.replace(/^grpc\+https?:\/\//, '')
}

describe('independent Python gRPC client (grpcio) against the daemon', { skip: SKIP }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-pyclient-'))
  // Daemons a failed test leaves running are killed by spawn.ts when the file's tests end.
  after(() => {
    fs.rmSync(root, { recursive: true, force: true })
  })

  const noOpenssl = opensslMissing()
  if (noOpenssl) console.log(`the python suite over TLS with tokens is skipped: ${noOpenssl}`)
  const transports = [
    // Port 0: the daemon binds a free port itself and reports it, so there is no race for it.
    { name: 'TCP 127.0.0.1', listen: '127.0.0.1:0', socket: undefined },
    { name: 'unix socket', listen: `unix:${path.join(root, 'd.sock')}`, socket: path.join(root, 'd.sock') },
    // A certificate from a CA made here, a write token for the suite and a read token for AuthTest.
    { name: 'TCP 127.0.0.1 with TLS and tokens', listen: '127.0.0.1:0', socket: undefined, tls: true, skip: noOpenssl },
  ]
  for (const t of transports) {
    test(`python3 -m unittest test_daemon over ${t.name}`, { skip: t.skip }, async () => {
      const store = path.join(root, `store-${t.socket ? 'unix' : t.tls ? 'tls' : 'tcp'}`)
      const secure: Record<string, string> = {}
      const daemonArgs: string[] = []
      if (t.tls) {
        const files = makeTlsFiles(path.join(root, 'tls'))
        const [write, read] = ['w', 'r'].map((r) => `${r}${crypto.randomUUID().replaceAll('-', '')}`) as [string, string]
        fs.writeFileSync(path.join(root, 'tokens'), `write ${write}\nread ${read}\n`)
        daemonArgs.push('--tls-cert', files.cert, '--tls-key', files.key, '--auth-file', path.join(root, 'tokens'))
        Object.assign(secure, { TVIX_DAEMON_CA: files.ca, TVIX_DAEMON_TOKEN: write, TVIX_DAEMON_READ_TOKEN: read })
      }
      const d = await startDaemon(store, t.listen, daemonArgs)
      const target = grpcioTarget(d.url)
      if (t.socket) assert.equal(target, `unix:${t.socket}`)
      else assert.match(target, /^127\.0\.0\.1:[1-9]\d*$/)
      if (t.tls) assert.match(d.url, /^grpc\+https:/)

      const py = await runProcess(PYTHON, ['-m', 'unittest', '-v', 'test_daemon'], {
        cwd: SUITE,
        env: pythonEnv({ TVIX_DAEMON: target, ...secure }),
      })
      const output = `${py.stdout.toString()}${py.stderr}`
      if (py.code !== 0) console.log(output)
      assert.equal(py.code, 0, `python suite failed (exit ${py.code}):\n${output}\n--- daemon log ---\n${d.log()}`)
      assert.match(py.stderr, /^OK\b/m, output)
      assert.doesNotMatch(py.stderr, /skipped 'set TVIX_DAEMON=/, 'the suite ran against the daemon')
      if (t.tls) {
        assert.doesNotMatch(py.stderr, /skipped 'set TVIX_DAEMON_TOKEN/, 'AuthTest ran')
        assert.match(py.stderr, /test_a_read_token \(test_daemon\.AuthTest/)
        for (const token of [secure.TVIX_DAEMON_TOKEN!, secure.TVIX_DAEMON_READ_TOKEN!]) assert.ok(!d.log().includes(token), 'no token in the daemon log')
      }

      assert.equal(await d.stop(), 0, d.log())
      assert.match(d.log(), /SIGTERM: stopping/)
      assert.match(d.log(), /daemon stopped/)
      if (t.socket) assert.ok(!fs.existsSync(t.socket), 'socket file removed on shutdown')
    })
  }
})
