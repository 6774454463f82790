/**
 * `daemon --http-upload`: real Nix 2.8 pushes to our store with `nix copy
 * --to http://…` (its default xz, and none, zstd, bzip2, br, gzip), with
 * credentials from a netrc file; what is stored equals what Nix has, and
 * Nix copies it back. Without credentials, or with wrong ones, Nix fails
 * and the store is unchanged; a private cache shows Nix nothing without
 * them. One daemon for the lot: Nix commands are slow to start.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, runNix } from '../helpers/nix.js'
import { buildNixClosure } from '../helpers/nix-closure.js'
import { makeTree } from '../helpers/trees.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cache-upload-'))
const built = buildNixClosure(root)
const skip = built.skip
if (skip) console.log(`skipping the binary cache upload tests: ${skip}`)

const AUTH = path.join(root, 'auth')
fs.writeFileSync(AUTH, '# who may push\nalice:s3cret:with:colons\n\n:tok3n\n')
/** netrc files, as a Nix user writes them: a login, a token-only line, a wrong password, none at all. */
const NETRC = {
  alice: netrc('login alice password s3cret:with:colons'),
  token: netrc('password tok3n'),
  wrong: netrc('login alice password s3cret'),
  none: path.join(root, 'no-such-netrc'),
}

function netrc(line: string): string {
  const file = path.join(root, `netrc-${line.replace(/\W+/g, '-')}`)
  fs.writeFileSync(file, `machine 127.0.0.1 ${line}\n`)
  return file
}

/**
 * A Nix command with `netrc` as its netrc file. Nix's narinfo cache is
 * off, so each command asks the server (else an upload's own record would
 * answer the private-cache check for it).
 */
function nix(cmd: string, args: string[], netrcFile: string) {
  return runNix(cmd, ['--option', 'netrc-file', netrcFile, '--option', 'narinfo-cache-positive-ttl', '0', '--option', 'narinfo-cache-negative-ttl', '0', ...args])
}

async function nixOk(cmd: string, args: string[], netrcFile: string): Promise<string> {
  const r = await nix(cmd, args, netrcFile)
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout.toString()
}

describe('daemon --http-upload: nix copy --to http://… stores what Nix has', { skip }, () => {
  const closure = built.closure!
  const store = path.join(root, 'store')
  // Source paths in a private Nix store, one per compression (a twin shares the `none` NAR).
  const source = new NixStore(path.join(root, 'nix-source'))
  const trees = {
    none: makeTree(root, 'mixed', 'up-none'),
    twin: makeTree(root, 'mixed', 'up-none-twin'),
    zstd: makeTree(root, 'wide', 'up-zstd'),
    bzip2: makeTree(root, 'odd-names', 'up-bzip2'),
    br: makeTree(root, 'mixed', 'up-br'),
    gzip: makeTree(root, 'odd-names', 'up-gzip'),
  }
  const paths: Record<string, string> = {}
  // The key Nix signs the closure with (?secret-key=) and checks it by.
  const sk = path.join(root, 'sk')
  const pk = path.join(root, 'pk')
  let daemon: RunningDaemon
  let cache: string

  /** Our narinfo for a store path (fetched with credentials: the cache is private), or the status. */
  async function served(storePath: string): Promise<string | number> {
    const r = await fetch(`${cache}/${path.basename(storePath).slice(0, 32)}.narinfo`, {
      headers: { authorization: `Basic ${Buffer.from(':tok3n').toString('base64')}` },
    })
    return r.status === 200 ? r.text() : r.status
  }

  /** Our export-nar of each path equals Nix's dump of `original(path)`. */
  async function assertSameNars(pathsToCheck: string[], original: (p: string) => string) {
    for (const p of pathsToCheck) {
      const ours = await runCli(['export-nar', '--store', store, p])
      assert.equal(ours.code, 0, ours.stderr)
      assert.ok(ours.stdout.equals(NixStore.dump(original(p))), `export-nar ${p} differs from nix-store --dump`)
    }
  }

  before(async () => {
    for (const [name, tree] of Object.entries(trees)) paths[name] = source.add(tree)
    daemon = await startDaemon(store, '127.0.0.1:0', ['--http-listen', '127.0.0.1:0', '--http-upload', '--http-auth-file', AUTH, '--http-private'])
    cache = /Nix binary cache at (http:\/\/\S+)/.exec(daemon.log())![1]!
  })
  after(async () => {
    await daemon?.stop()
  })

  test('without credentials, or with a wrong password, nix copy --to fails on a 401 and stores nothing', async () => {
    for (const netrcFile of [NETRC.none, NETRC.wrong]) {
      const r = await nix('nix', ['copy', '--to', cache, closure.top], netrcFile)
      assert.notEqual(r.code, 0)
      assert.match(r.stderr, /HTTP error 401/)
      assert.match(r.stderr, /this binary cache wants credentials/)
    }
    for (const e of closure.listing) assert.equal(await served(e.path), 404, e.path)
  })

  test('nix copy --to (xz, its default, signing) stores the closure: same NARs, References, Deriver and valid Sig as Nix', async () => {
    await nixOk('nix-store', ['--generate-binary-cache-key', 'up-test-1', sk, pk], NETRC.none)
    await nixOk('nix', ['copy', '--to', `${cache}?secret-key=${sk}`, closure.top], NETRC.alice)
    await assertSameNars(closure.listing.map((e) => e.path), (p) => p)
    // One process for the four PathInfos; the narinfo served for the top shows the same lines.
    const ours = await runCli(['path-info', '--json', '--recursive', '--store', store, closure.top])
    assert.equal(ours.code, 0, ours.stderr)
    const pick = (e: Record<string, unknown>) => ({ path: e.path, narHash: e.narHash, narSize: e.narSize, references: e.references, deriver: e.deriver })
    assert.deepEqual((JSON.parse(ours.stdout.toString()) as Array<Record<string, unknown>>).map(pick), closure.listing.map((e) => pick({ ...e })))
    const top = closure.listing.find((e) => e.path === closure.top)!
    const narinfo = String(await served(closure.top))
    assert.match(narinfo, new RegExp(`^References: ${top.references.map((r) => path.basename(r)).join(' ')}$`, 'm'))
    assert.match(narinfo, new RegExp(`^Deriver: ${path.basename(top.deriver!)}$`, 'm'))
    // Nix checks each stored Sig against its path's fingerprint (input-addressed paths: no CA to fall back on).
    const verify = (key: string) => nix('nix', ['store', 'verify', '--no-contents', '--recursive', '--store', cache, '--trusted-public-keys', key, closure.top], NETRC.alice)
    const trusted = await verify(fs.readFileSync(pk, 'utf8'))
    assert.equal(trusted.code, 0, trusted.stderr)
    assert.match((await verify(`up-other-1:${Buffer.alloc(32, 1).toString('base64')}`)).stderr, /is untrusted/)
  })

  test('nix copy --to with ?compression=none, zstd, bzip2, br, gzip (a token for credentials): same NARs', async () => {
    const by: Record<string, string[]> = { none: [paths.none!, paths.twin!], zstd: [paths.zstd!], bzip2: [paths.bzip2!], br: [paths.br!], gzip: [paths.gzip!] }
    for (const [compression, ps] of Object.entries(by)) {
      await nixOk('nix', ['copy', '--from', source.url, '--to', `${cache}?compression=${compression}`, ...ps], NETRC.token)
    }
    const tree = Object.fromEntries(Object.keys(trees).map((k) => [paths[k]!, trees[k as keyof typeof trees]]))
    await assertSameNars(Object.values(paths), (p) => tree[p]!)
  })

  test('nix copy --from http://… with credentials gives Nix the same paths back, signatures checked; without them Nix sees none', async () => {
    const back = new NixStore(path.join(root, 'nix-back'))
    // Signatures checked: the closure is signed, the zstd path content-addressed.
    await nixOk('nix', ['copy', '--from', cache, '--option', 'trusted-public-keys', fs.readFileSync(pk, 'utf8'), '--to', back.url, closure.top, paths.zstd!], NETRC.alice)
    for (const e of closure.listing) assert.ok(NixStore.dump(path.join(back.root, e.path)).equals(NixStore.dump(e.path)), e.path)
    assert.ok(NixStore.dump(path.join(back.root, paths.zstd!)).equals(NixStore.dump(trees.zstd)))
    const blind = await nix('nix', ['path-info', '--store', cache, closure.top], NETRC.none)
    assert.notEqual(blind.code, 0)
    assert.match(blind.stderr, /is not valid/)
  })
})

describe('daemon --http-upload refuses to start unsafe or malformed settings: one error line, exit 2', () => {
  test('on a non-loopback address without --http-auth-file', async () => {
    const store = path.join(root, 'never-open')
    const r = await runCli(['daemon', '--store', store, '--listen', '127.0.0.1:0', '--http-listen', '0.0.0.0:0', '--http-upload'])
    assert.equal(r.code, 2, r.stderr)
    assertOneErrorLine(r.stderr, /^error: --http-upload on 0\.0\.0\.0, which other machines can reach, needs --http-auth-file/)
    assert.equal(fs.existsSync(store), false)
  })

  test('an auth file with a malformed line: named by its number, the secret never shown', async () => {
    const bad = path.join(root, 'bad-auth')
    fs.writeFileSync(bad, '# ok\nalice:fine\nhunter2-no-colon\n')
    const r = await runCli(['daemon', '--store', path.join(root, 'never-open'), '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--http-upload', '--http-auth-file', bad])
    assert.equal(r.code, 2, r.stderr)
    assertOneErrorLine(r.stderr, new RegExp(`^error: --http-auth-file ${bad}: line 3 is not "user:password" or ":token"$`))
    assert.doesNotMatch(r.stderr, /hunter2|fine/)
  })
})
