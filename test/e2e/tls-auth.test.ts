/**
 * TLS and tokens end to end: a daemon serving gRPC and the binary cache
 * over TLS with a certificate a CA made here signed (openssl, in the
 * test's temp dir), and an --auth-file of read and write tokens. Our
 * client over grpc+https (the right CA, a wrong one, none), each token
 * case with the status it must get on the wire (missing and wrong:
 * UNAUTHENTICATED, read on a Put: PERMISSION_DENIED, health and
 * reflection open), Nix 2.8 reading the cache over https with
 * `ssl-cert-file`, the start-up refusals, and no token ever in the
 * daemon's log or a client's error.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { H2Streams } from '../../src/backends/grpc/h2-stream.js'
import { RpcClient } from '../../src/backends/grpc/rpc.js'
import { Status } from '../../src/grpc/status.js'
import { assertOneErrorLine, assertOneJsonError, runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NIX_ENV, NixStore, nixMissing } from '../helpers/nix.js'
import { runProcess } from '../helpers/spawn.js'
import { makeTlsFiles, opensslMissing, type TlsFiles } from '../helpers/tls.js'
import { makeTree } from '../helpers/trees.js'

const skip = opensslMissing()
if (skip) console.log(`skipping the TLS and token tests: ${skip}`)
const noNix = nixMissing()
if (!skip && noNix) console.log(`skipping nix copy --from https://: ${noNix}`)

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-tls-'))
after(() => fs.rmSync(root, { recursive: true, force: true }))

const hex = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n * 11) & 0xff)).toString('hex')
// Tokens as `openssl rand -hex 32` makes them; WRONG is well-formed and in no file.
const WRITE = `w${hex(31)}`
const READ = `r${hex(29)}`
const WRONG = `x${hex(27)}`

/** The three write RPCs and some reads, as raw paths: the token check comes before any message is decoded. */
const PUTS = ['/tvix.castore.v1.BlobService/Put', '/tvix.castore.v1.DirectoryService/Put', '/tvix.store.v1.PathInfoService/Put']
const READS = ['/tvix.castore.v1.BlobService/Stat', '/tvix.castore.v1.DirectoryService/Get', '/tvix.store.v1.PathInfoService/Get', '/tvix.store.v1.PathInfoService/List']
const OPEN = ['/grpc.health.v1.Health/Check', '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo']

describe('daemon over TLS with tokens', { skip }, () => {
  let tls: TlsFiles
  let daemon: RunningDaemon
  let url: string
  let cache: string
  const tokenFile = (name: string, token: string) => {
    const f = path.join(root, `${name}.token`)
    fs.writeFileSync(f, `${token}\n`, { mode: 0o600 })
    return f
  }
  let writeToken: string
  let readToken: string
  const tree = path.join(root, 'tree')
  const store = path.join(root, 'store')
  /** Every stderr a client printed here: no token may be in any of them. */
  const clientErrors: string[] = []
  const cli = async (args: string[], env?: Record<string, string>) => {
    const r = await runCli(args, { env })
    clientErrors.push(r.stderr)
    return r
  }

  before(async () => {
    tls = makeTlsFiles(path.join(root, 'tls'))
    makeTree(root, 'mixed', 'tree')
    fs.writeFileSync(path.join(root, 'tokens'), `# who may do what\nwrite ${WRITE}\n\n  read ${READ}  \n`, { mode: 0o600 })
    writeToken = tokenFile('write', WRITE)
    readToken = tokenFile('read', READ)
    daemon = await startDaemon(store, '127.0.0.1:0', ['--tls-cert', tls.cert, '--tls-key', tls.key, '--auth-file', path.join(root, 'tokens'), '--http-listen', '127.0.0.1:0'])
    url = daemon.url
    cache = /Nix binary cache at (https:\/\/\S+)/.exec(daemon.log())![1]!
  })
  after(async () => {
    if (!daemon) return
    assert.equal(await daemon.stop(), 0, daemon.log())
    for (const token of [WRITE, READ, WRONG]) {
      assert.ok(!daemon.log().includes(token), 'no token in the daemon log')
      for (const e of clientErrors) assert.ok(!e.includes(token), `no token in a client's error: ${e}`)
    }
  })

  test('the daemon says grpc+https and https, and that calls need a token', () => {
    assert.match(url, /^grpc\+https:\/\/127\.0\.0\.1:\d+$/)
    assert.match(cache, /^https:\/\/127\.0\.0\.1:\d+$/)
    assert.match(daemon.log(), /gRPC calls need a token from --auth-file .* \(health and reflection are open\)/)
  })

  test('our client: write token imports, read token reads, over grpc+https trusting the CA', async () => {
    const imported = await cli(['import', '--store', url, '--tls-ca', tls.ca, '--auth-token-file', writeToken, tree])
    assert.equal(imported.code, 0, imported.stderr)
    const local = await cli(['import', '--store', path.join(root, 'local'), tree])
    assert.equal(imported.stdout.toString(), local.stdout.toString())
    const storePath = imported.stdout.toString().trim()
    // The token from the environment, the CA from its variable.
    const nar = await cli(['export-nar', '--store', url, storePath], { TVIX_STORE_TOKEN: READ, TVIX_STORE_TLS_CA: tls.ca })
    assert.equal(nar.code, 0, nar.stderr)
    const want = await cli(['export-nar', '--store', path.join(root, 'local'), storePath])
    assert.ok(nar.stdout.equals(want.stdout), 'the NAR read over TLS')
    if (!noNix) assert.ok(nar.stdout.equals(NixStore.dump(tree)), "Nix's NAR")
  })

  test('a CA that did not sign the certificate, or none (the built-in list): one error line, exit 1', async () => {
    for (const ca of [['--tls-ca', tls.otherCa], []]) {
      const r = await cli(['path-info', '--store', url, ...ca, '--auth-token-file', readToken, '--all'])
      assert.equal(r.code, 1, r.stderr)
      assertOneErrorLine(r.stderr, /^error: cannot reach the tvix-store daemon at grpc\+https:\/\/127\.0\.0\.1:\d+: (unable to verify the first certificate|self[- ]signed certificate)/)
    }
  })

  test('no token, a wrong one, a read token on import: one error line each, nothing written', async () => {
    const cases: Array<[string[], Record<string, string> | undefined, RegExp]> = [
      [[], undefined, /refused the call: this daemon needs a token \(authorization: Bearer TOKEN\)$/],
      [[], { TVIX_STORE_TOKEN: WRONG }, /refused the call: the token is not valid for this daemon$/],
      [['--auth-token-file', readToken], undefined, /refused the call: the token may only read$/],
    ]
    const other = path.join(root, 'other')
    fs.mkdirSync(other)
    fs.writeFileSync(path.join(other, 'f'), 'not stored\n')
    for (const [args, env, re] of cases) {
      const r = await cli(['import', '--store', url, '--tls-ca', tls.ca, ...args, other], env)
      assert.equal(r.code, 1, r.stderr)
      assertOneErrorLine(r.stderr, re)
    }
    const listed = await cli(['path-info', '--store', url, '--tls-ca', tls.ca, '--all'], { TVIX_STORE_TOKEN: READ })
    assert.equal(listed.code, 0, listed.stderr)
    assert.doesNotMatch(listed.stdout.toString(), /-other$/m)
    // Under --json: one error object with its own code.
    const json = await cli(['path-info', '--store', url, '--tls-ca', tls.ca, '--all', '--json'])
    assert.equal(json.code, 1, json.stderr)
    assertOneJsonError(json.stderr, 'ERR_ACCESS', /refused the call: this daemon needs a token/)
  })

  test('on the wire: UNAUTHENTICATED without a valid token, PERMISSION_DENIED for a read token on each Put, health and reflection open', async () => {
    const target = new URL(url.replace(/^grpc\+/, '')).host
    const ca = fs.readFileSync(tls.ca)
    const codeOf = async (token: string | undefined, method: string) => {
      const h2 = new H2Streams(target, 4 << 20, { tls: { ca }, token })
      try {
        await h2.collect(method, new Uint8Array(0), 1 << 20)
        return Status.OK
      } catch (e) {
        return (e as { code: Status }).code
      } finally {
        h2.close()
      }
    }
    const denied = new Set([Status.UNAUTHENTICATED, Status.PERMISSION_DENIED])
    for (const method of [...PUTS, ...READS]) {
      assert.equal(await codeOf(undefined, method), Status.UNAUTHENTICATED, method)
      assert.equal(await codeOf(WRONG, method), Status.UNAUTHENTICATED, method)
      assert.equal(await codeOf(`${WRITE}x`, method), Status.UNAUTHENTICATED, `${method}: a token with one more character`)
    }
    for (const method of PUTS) {
      assert.equal(await codeOf(READ, method), Status.PERMISSION_DENIED, method)
      assert.ok(!denied.has(await codeOf(WRITE, method)), `${method} with the write token passes the check`)
    }
    for (const method of READS) {
      assert.ok(!denied.has(await codeOf(READ, method)), `${method} with the read token`)
      assert.ok(!denied.has(await codeOf(WRITE, method)), `${method} with the write token`)
    }
    for (const method of OPEN) assert.equal(await codeOf(undefined, method), Status.OK, method)

    // grpc-js as a client: the same check (it sends the token as metadata through an interceptor).
    for (const [token, code] of [[undefined, Status.UNAUTHENTICATED], [READ, Status.NOT_FOUND]] as const) {
      const rpc = new RpcClient(target, url, { tls: { ca }, token })
      try {
        await assert.rejects(rpc.unary('tvix.castore.v1.BlobService', 'Stat', { digest: new Uint8Array(32), sendChunks: false, sendBao: false }), (e: { code: Status }) => e.code === code)
      } finally {
        rpc.close()
      }
    }
  })

  test('the binary cache over https: our copy --from with --tls-ca', async () => {
    const imported = await cli(['import', '--store', url, '--tls-ca', tls.ca, '--auth-token-file', writeToken, tree])
    const storePath = imported.stdout.toString().trim()
    const target = path.join(root, 'from-https')
    const r = await cli(['copy', '--from', cache, '--tls-ca', tls.ca, '--no-check-sigs', '--to', target, storePath])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString().trim(), storePath)
    const untrusted = await cli(['copy', '--from', cache, '--tls-ca', tls.otherCa, '--no-check-sigs', '--to', path.join(root, 'never'), storePath])
    assert.equal(untrusted.code, 1, untrusted.stderr)
    assertOneErrorLine(untrusted.stderr, /certificate/)
  })

  test('without --tls-ca the CA file Nix reads is trusted: $NIX_SSL_CERT_FILE, else $SSL_CERT_FILE; --tls-ca overrides both', async () => {
    const imported = await cli(['import', '--store', url, '--tls-ca', tls.ca, '--auth-token-file', writeToken, tree])
    const storePath = imported.stdout.toString().trim()
    const copy = (target: string, env: Record<string, string>, flags: string[] = []) =>
      cli(['copy', '--from', cache, ...flags, '--no-check-sigs', '--to', path.join(root, target), storePath], { NIX_SSL_CERT_FILE: '', SSL_CERT_FILE: '', ...env })
    for (const [target, env] of [['nix-var', { NIX_SSL_CERT_FILE: tls.ca, SSL_CERT_FILE: tls.otherCa }], ['ssl-var', { SSL_CERT_FILE: tls.ca }]] as const) {
      const r = await copy(target, env)
      assert.equal(r.code, 0, `${target}: ${r.stderr}`)
      assert.equal(r.stdout.toString().trim(), storePath)
    }
    const overridden = await copy('flag', { NIX_SSL_CERT_FILE: tls.otherCa }, ['--tls-ca', tls.ca])
    assert.equal(overridden.code, 0, overridden.stderr)
    const untrusted = await copy('never', { NIX_SSL_CERT_FILE: tls.otherCa })
    assert.equal(untrusted.code, 1, untrusted.stderr)
    assertOneErrorLine(untrusted.stderr, /certificate/)
    // A variable naming no file matters only where TLS is used.
    const missing = path.join(root, 'no-such-ca.pem')
    const gone = await copy('never', { NIX_SSL_CERT_FILE: missing })
    assert.equal(gone.code, 1, gone.stderr)
    assertOneErrorLine(gone.stderr, new RegExp(`^error: cannot read the TLS CA file \\(from \\$NIX_SSL_CERT_FILE\\) ${missing}: it does not exist$`))
    const local = await cli(['path-info', '--store', path.join(root, 'nix-var'), storePath], { NIX_SSL_CERT_FILE: missing })
    assert.equal(local.code, 0, local.stderr)
  })

  test('nix copy --from https://… trusting the CA (NIX_SSL_CERT_FILE) gets the NAR Nix has', { skip: noNix }, async () => {
    const storePath = new NixStore(path.join(root, 'nix-ref')).add(tree)
    // Stored by the import test already; again, so that this test runs alone too.
    const imported = await cli(['import', '--store', url, '--tls-ca', tls.ca, '--auth-token-file', writeToken, tree])
    assert.equal(imported.stdout.toString().trim(), storePath, imported.stderr)
    const target = new NixStore(path.join(root, 'nix-copied'))
    // Nix 2.8 has no ssl-cert-file setting yet (`--option ssl-cert-file` is ignored): its curl reads the variable.
    const args = ['copy', '--from', cache, '--no-check-sigs', '--to', target.url, storePath]
    const r = await runProcess('nix', args, { env: { ...NIX_ENV, NIX_SSL_CERT_FILE: tls.ca } })
    assert.equal(r.code, 0, r.stderr)
    assert.ok(NixStore.dump(path.join(target.root, storePath)).equals(NixStore.dump(tree)))
    // Trusting another CA, Nix refuses the cache.
    const refused = await runProcess('nix', [...args.slice(0, 5), `${target.url}-2`, storePath], { env: { ...NIX_ENV, NIX_SSL_CERT_FILE: tls.otherCa } })
    assert.notEqual(refused.code, 0)
    assert.match(refused.stderr, /SSL peer certificate .* was not OK/)
  })
})

describe('daemon start-up refusals: one error line, exit 2, no store created', { skip }, () => {
  const store = path.join(root, 'never-created')
  let tls: TlsFiles
  before(() => {
    tls = makeTlsFiles(path.join(root, 'tls-refusals'))
  })
  const refused = async (args: string[], re: RegExp) => {
    const r = await runCli(['daemon', '--store', store, ...args])
    assert.equal(r.code, 2, r.stderr)
    assertOneErrorLine(r.stderr, re)
    assert.equal(fs.existsSync(store), false)
    return r
  }

  test('listening beyond loopback without --auth-file', async () => {
    await refused(['--listen', '0.0.0.0:0'], /^error: --listen 0\.0\.0\.0:0, which other machines can reach, needs --auth-file \(else anyone could write to the store; --insecure-allow-anyone to allow it\)$/)
    await refused(['--listen', '[::]:0'], /needs --auth-file/)
  })

  test('--insecure-allow-anyone starts it all the same (gRPC, and uploads to the cache)', async () => {
    const d = await startDaemon(path.join(root, 'anyone'), '0.0.0.0:0', ['--insecure-allow-anyone', '--http-listen', '0.0.0.0:0', '--http-upload'])
    assert.match(d.url, /^grpc\+http:\/\/0\.0\.0\.0:\d+$/)
    assert.match(d.log(), /Nix binary cache at http:\/\/0\.0\.0\.0:\d+/)
    assert.equal(await d.stop(), 0, d.log())
  })

  test('an auth file with a bad line: named by its number, never shown', async () => {
    const secret = `s${hex(20)}`
    for (const [text, re] of [
      [`write ${WRITE}\nadmin ${secret}\n`, /^error: --auth-file \S+: line 2 is not "read TOKEN" or "write TOKEN"$/],
      [`read short${secret.slice(0, 5)}\n`, /^error: --auth-file \S+: line 1: a token has at least 16 characters/],
      [`read ${secret}\n# again\nwrite ${secret}\n`, /^error: --auth-file \S+: line 3 repeats the token of line 1$/],
      ['# nothing\n', /^error: --auth-file \S+ holds no tokens/],
    ] as const) {
      const f = path.join(root, 'bad-tokens')
      fs.writeFileSync(f, text)
      const r = await refused(['--listen', '127.0.0.1:0', '--auth-file', f], re)
      assert.ok(!r.stderr.includes(secret.slice(0, 12)), r.stderr)
    }
  })

  test('a key that is not the certificate\'s, or no PEM at all', async () => {
    const other = makeTlsFiles(path.join(root, 'tls-other'))
    await refused(['--listen', '127.0.0.1:0', '--tls-cert', tls.cert, '--tls-key', other.key], /^error: --tls-cert \S+ and --tls-key \S+ cannot serve TLS: key values mismatch$/)
    await refused(['--listen', '127.0.0.1:0', '--tls-cert', path.join(root, 'tls-other', 'san.ext'), '--tls-key', tls.key], /cannot serve TLS: /)
    await refused(['--listen', `unix:${path.join(root, 'd.sock')}`, '--tls-cert', tls.cert, '--tls-key', tls.key], /^error: --tls-cert: a unix socket is served without TLS/)
  })
})
