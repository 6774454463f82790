/**
 * SIGHUP re-reads the daemon's secret files: a renewed certificate (here one
 * another CA signed, so the switch is visible), rotated tokens and rotated
 * HTTP passwords and a rotated signing key, with no restart; and a bad file on a later SIGHUP keeps
 * every previous file (all or nothing), in one log line.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import https from 'node:https'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { makeTlsFiles, opensslMissing, type TlsFiles } from '../helpers/tls.js'
import { makeTree } from '../helpers/trees.js'
import { generateSecretKey, renderSecretKey } from '../../src/store/signing.js'

const skip = opensslMissing()
if (skip) console.log(`skipping the SIGHUP reload tests: ${skip}`)

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-reload-'))
after(() => fs.rmSync(root, { recursive: true, force: true }))

const token = (c: string) => c.repeat(40)
const [T1, T2, T3] = [token('a'), token('b'), token('c')]

/** Status and body of an HTTPS GET trusting `ca`, with Basic `userPass` if given. */
function fetchText(url: string, ca: string, userPass?: string): Promise<{ status: number; text: string }> {
  const headers = userPass ? { authorization: `Basic ${Buffer.from(userPass).toString('base64')}` } : {}
  return new Promise((resolve, reject) => {
    https
      .get(url, { ca: fs.readFileSync(ca), headers, agent: false }, (res) => {
        let text = ''
        res.on('data', (c: Buffer) => (text += c.toString()))
        res.on('end', () => resolve({ status: res.statusCode!, text }))
      })
      .on('error', reject)
  })
}
const get = async (url: string, ca: string, userPass?: string) => (await fetchText(url, ca, userPass)).status
async function getText(url: string, ca: string, userPass: string): Promise<string> {
  const { status, text } = await fetchText(url, ca, userPass)
  assert.equal(status, 200, text)
  return text
}
/** The key names of a narinfo's Sig lines. */
const sigNames = (narinfo: string) => [...narinfo.matchAll(/^Sig: ([^:]+):/gm)].map((m) => m[1]!)

describe('daemon: SIGHUP reloads certificate, tokens and HTTP credentials', { skip }, () => {
  let a: TlsFiles
  let b: TlsFiles
  let daemon: RunningDaemon
  let cache: string
  let storePath: string
  const cert = path.join(root, 'cert.pem')
  const key = path.join(root, 'key.pem')
  const tokens = path.join(root, 'tokens')
  const passwords = path.join(root, 'passwords')
  const signingKey = path.join(root, 'signing.sec')
  const generateKey = (name: string) => fs.writeFileSync(signingKey, renderSecretKey(generateSecretKey(name)), { mode: 0o600 })
  const tree = path.join(root, 'tree')

  /** Sends SIGHUP and waits for the daemon's answer line (it has no other way to say it is done). */
  async function hangup(): Promise<string> {
    const seen = daemon.log().split('SIGHUP:').length
    daemon.proc.kill('SIGHUP')
    for (;;) {
      const parts = daemon.log().split('SIGHUP:')
      if (parts.length > seen) return `SIGHUP:${parts[seen]!.split('\n')[0]}`
      assert.ok(daemon.proc.exitCode === null && daemon.proc.signalCode === null, `the daemon ended (${daemon.proc.signalCode ?? daemon.proc.exitCode}): ${daemon.log()}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  const cli = (args: string[], ca: string, tok: string) => runCli([...args, '--store', daemon.url, '--tls-ca', ca], { env: { TVIX_STORE_TOKEN: tok } })

  before(async () => {
    a = makeTlsFiles(path.join(root, 'a'))
    b = makeTlsFiles(path.join(root, 'b'))
    fs.copyFileSync(a.cert, cert)
    fs.copyFileSync(a.key, key)
    fs.writeFileSync(tokens, `write ${T1}\n`, { mode: 0o600 })
    fs.writeFileSync(passwords, 'nix:first-password\n', { mode: 0o600 })
    generateKey('first-key')
    makeTree(root, 'mixed', 'tree')
    daemon = await startDaemon(path.join(root, 'store'), '127.0.0.1:0', [
      '--tls-cert', cert, '--tls-key', key, '--auth-file', tokens,
      '--http-listen', '127.0.0.1:0', '--http-auth-file', passwords, '--http-private',
      '--secret-key-file', signingKey,
    ])
    cache = /Nix binary cache at (https:\/\/\S+)/.exec(daemon.log())![1]!
    const imported = await cli(['import', tree], a.ca, T1)
    assert.equal(imported.code, 0, imported.stderr)
    storePath = imported.stdout.toString().trim()
  })
  after(async () => {
    if (daemon) assert.equal(await daemon.stop(), 0, daemon.log())
  })

  test('after SIGHUP the new certificate, token and password are the ones that work', async () => {
    const narinfo = `${cache}/${path.basename(storePath).slice(0, 32)}.narinfo`
    assert.equal(await get(narinfo, a.ca, 'nix:first-password'), 200)
    assert.deepEqual(sigNames(await getText(narinfo, a.ca, 'nix:first-password')), ['first-key'])

    fs.copyFileSync(b.cert, cert)
    fs.copyFileSync(b.key, key)
    fs.writeFileSync(tokens, `write ${T2}\n`)
    fs.writeFileSync(passwords, 'nix:second-password\n')
    generateKey('second-key')
    assert.equal(await hangup(), `SIGHUP: reloaded --tls-cert ${cert}, --auth-file ${tokens}, --http-auth-file ${passwords}, --secret-key-file ${signingKey}`)

    const read = await cli(['path-info', storePath], b.ca, T2)
    assert.equal(read.code, 0, read.stderr)
    assert.equal(read.stdout.toString().trim(), storePath)
    const oldCa = await cli(['path-info', storePath], a.ca, T2)
    assert.equal(oldCa.code, 1, oldCa.stderr)
    assertOneErrorLine(oldCa.stderr, /^error: cannot reach the tvix-store daemon at grpc\+https:\/\/127\.0\.0\.1:\d+: (unable to verify the first certificate|self[- ]signed certificate)/)
    const oldToken = await cli(['path-info', storePath], b.ca, T1)
    assert.equal(oldToken.code, 1, oldToken.stderr)
    assertOneErrorLine(oldToken.stderr, /refused the call: the token is not valid for this daemon$/)

    assert.equal(await get(narinfo, b.ca, 'nix:second-password'), 200)
    assert.equal(await get(narinfo, b.ca, 'nix:first-password'), 401)
    assert.deepEqual(sigNames(await getText(narinfo, b.ca, 'nix:second-password')), ['second-key'], 'signed with the new key only')
    await assert.rejects(get(narinfo, a.ca, 'nix:second-password'), /certificate/)
  })

  test('a bad file on SIGHUP keeps every previous file, and says why in one line', async () => {
    fs.writeFileSync(tokens, `write ${T3}\n`)
    fs.writeFileSync(key, 'not a key\n')
    const line = await hangup()
    assert.match(line, new RegExp(`^SIGHUP: kept the previous files: --tls-cert ${cert} and --tls-key ${key} cannot serve TLS: `))
    // The token file was fine, but nothing of this SIGHUP applies.
    const still = await cli(['path-info', storePath], b.ca, T2)
    assert.equal(still.code, 0, still.stderr)
    const notYet = await cli(['path-info', storePath], b.ca, T3)
    assert.equal(notYet.code, 1, notYet.stderr)
    assert.ok(!daemon.log().includes(T3) && !daemon.log().includes(T2), 'a token in the log')
  })
})
