/**
 * Binary caches written by real Nix 2.8 (`nix copy --to file://…`) as a
 * source: `copy --from nix+file://…` and `http://…` (the same folder behind
 * a plain static server) of a closure built by nix-build, trust, read-only
 * commands on a cache, and bad caches (tampered NAR, lying narinfo, missing
 * reference, 5xx, dropped connections), each a clear error with the
 * target left as it was.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { type FileCacheServer, startFileCacheServer } from '../helpers/file-cache-server.js'
import { NixStore, runNix } from '../helpers/nix.js'
import { buildNixClosure } from '../helpers/nix-closure.js'
import { snapshot } from '../helpers/snapshot.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cache-source-'))
after(() => fs.rmSync(root, { recursive: true, force: true }))
const built = buildNixClosure(root)
const skip = built.skip
if (skip) console.log(`skipping the binary cache source tests: ${skip}`)

async function nixOk(cmd: string, args: string[]): Promise<string> {
  const r = await runNix(cmd, args)
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout.toString()
}

async function ok(args: string[]): Promise<string> {
  const r = await runCli(args)
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout.toString()
}

/** A failing command: one error line matching `says`, exit 1. */
async function fails(args: string[], says: RegExp): Promise<void> {
  const r = await runCli(args)
  assert.equal(r.code, 1, `${args.join(' ')} should fail: ${r.stdout}`)
  assertOneErrorLine(r.stderr, says)
}

const hashOf = (p: string) => path.basename(p).slice(0, 32)
const narinfoLines = (text: string, keys: string[]) => text.split('\n').filter((l) => keys.some((k) => l.startsWith(`${k}: `)))

describe('copy --from a binary cache Nix wrote', { skip }, () => {
  const closure = built.closure!
  const { top } = closure
  const leaf = closure.byName['fx-leaf']!
  const xz = path.join(root, 'cache-xz')
  const zstd = path.join(root, 'cache-zstd')
  let publicKey = ''
  let otherKey = ''
  let caPath = ''
  let server: FileCacheServer

  /** Every path of the target `store` has the NAR Nix has. */
  async function assertSameNars(store: string): Promise<void> {
    for (const e of closure.listing) assert.ok((await runCli(['export-nar', '--store', store, e.path])).stdout.equals(NixStore.dump(e.path)), e.path)
  }

  /** The closure in `store` is the one Nix has (NAR hashes Nix computed, which our ingest checked the stored tree against): one command. */
  async function assertSameInfos(store: string): Promise<void> {
    const pick = (e: Record<string, unknown>) => ({ path: e.path, narHash: e.narHash, narSize: e.narSize, references: e.references, deriver: e.deriver })
    const ours = JSON.parse(await ok(['path-info', '--json', '-r', '--store', store, top])) as Array<Record<string, unknown>>
    assert.deepEqual(ours.map(pick), closure.listing.map((e) => pick({ ...e })))
  }

  before(async () => {
    const sk = path.join(root, 'sk')
    const pk = path.join(root, 'pk')
    await nixOk('nix-store', ['--generate-binary-cache-key', 'test-cache-1', sk, pk])
    publicKey = fs.readFileSync(pk, 'utf8')
    await nixOk('nix-store', ['--generate-binary-cache-key', 'test-cache-1', `${sk}2`, `${pk}2`])
    otherKey = fs.readFileSync(`${pk}2`, 'utf8')
    // Signed and xz-compressed (Nix's default); unsigned and zstd.
    await nixOk('nix', ['copy', '--to', `file://${xz}?compression=xz&secret-key=${sk}`, top])
    // A content-addressed path beside it (nix-store --add): trusted unsigned, as by Nix.
    caPath = (await nixOk('nix-store', ['--add', path.join(root, 'diamond.nix')])).trim()
    await nixOk('nix', ['copy', '--to', `file://${zstd}?compression=zstd`, top, caPath])
    server = await startFileCacheServer(xz)
  })
  after(async () => {
    await server?.close()
  })

  test('nix+file://, signed: the whole closure, each NAR as Nix has it, narinfo keeping References, Deriver and Sig', async () => {
    const store = path.join(root, 'from-file')
    const report = JSON.parse(await ok(['copy', '--from', `nix+file://${xz}`, '--to', store, '--trusted-public-keys', publicKey, '--json', top]))
    assert.deepEqual(report.copied, closure.listing.map((e) => e.path))
    assert.deepEqual(report.skipped, [])
    await assertSameNars(store)
    for (const e of closure.listing) {
      const theirs = fs.readFileSync(path.join(xz, `${hashOf(e.path)}.narinfo`), 'utf8')
      const ours = await ok(['narinfo', '--store', store, e.path])
      const keys = ['StorePath', 'NarHash', 'NarSize', 'References', 'Deriver', 'Sig']
      assert.deepEqual(narinfoLines(ours, keys), narinfoLines(theirs, keys), e.path)
      assert.match(ours, /^Sig: test-cache-1:/m)
    }
    // A second copy finds everything there.
    const again = JSON.parse(await ok(['copy', '--from', `nix+file://${xz}`, '--to', store, '--trusted-public-keys', publicKey, '--json', top]))
    assert.deepEqual([again.copied, again.skipped], [[], closure.listing.map((e) => e.path)])
  })

  test('http://, the same folder behind a plain server: narinfos, then NARs, references first', async () => {
    const store = path.join(root, 'from-http')
    server.requests.length = 0
    const out = await ok(['copy', '--from', server.url, '--to', store, '--trusted-public-keys', publicKey, '--parallel', '2', top])
    assert.deepEqual(out.trim().split('\n').sort(), closure.listing.map((e) => e.path))
    await assertSameInfos(store)
    const gets = server.requests.filter((r) => r.startsWith('GET /nar/'))
    assert.equal(gets.length, closure.listing.length, server.requests.join('\n'))
    assert.ok(server.requests.indexOf('GET /nix-cache-info') === 0, server.requests.join('\n'))
  })

  test('trust: unsigned or signed by another key is refused naming the path, nothing copied; a content-addressed path needs no signature; --no-check-sigs admits', async () => {
    const store = path.join(root, 'trust')
    await ok(['import', '--store', store, path.join(root, 'pk')])
    const before = snapshot(store)
    const lacks = /^error: cannot add path '\/nix\/store\/[a-z0-9]{32}-fx-[a-z]+' from binary cache 'nix\+file:\/\/.*': it lacks a valid signature by a trusted key; give --trusted-public-keys or --no-check-sigs$/
    await fails(['copy', '--from', `nix+file://${zstd}`, '--to', store, '--trusted-public-keys', publicKey, top], lacks)
    await fails(['copy', '--from', `nix+file://${xz}`, '--to', store, '--trusted-public-keys', otherKey, top], lacks)
    const badKey = await runCli(['copy', '--from', `nix+file://${xz}`, '--to', store, '--trusted-public-keys', 'test-cache-1:c2hvcnQ=', top])
    assert.equal(badKey.code, 2, badKey.stderr)
    assertOneErrorLine(badKey.stderr, /^error: --trusted-public-keys: /)
    assert.deepEqual(snapshot(store), before)
    assert.equal(await ok(['copy', '--from', `nix+file://${zstd}`, '--to', store, '--trusted-public-keys', publicKey, caPath]), `${caPath}\n`)
    await ok(['copy', '--from', `nix+file://${zstd}`, '--to', store, '--no-check-sigs', top])
    await assertSameInfos(store)
    // The environment variable stands for the flag.
    const env = await runCli(['copy', '--from', `nix+file://${xz}`, '--to', path.join(root, 'trust-env'), top], { env: { TVIX_TRUSTED_PUBLIC_KEYS: publicKey } })
    assert.equal(env.code, 0, env.stderr)
  })

  test('narinfo, ls, cat and export-nar with --store naming the cache', async () => {
    const cache = `nix+file://${xz}`
    assert.ok((await runCli(['export-nar', '--store', cache, top])).stdout.equals(NixStore.dump(top)))
    assert.equal(await ok(['cat', '--store', cache, leaf]), fs.readFileSync(leaf, 'utf8'))
    assert.equal(await ok(['ls', '-lR', '--store', cache, closure.byName['fx-right']!]), await nixOk('nix', ['store', 'ls', '-lR', closure.byName['fx-right']!]))
    const keys = ['StorePath', 'NarHash', 'NarSize', 'References', 'Deriver', 'Sig']
    assert.deepEqual(narinfoLines(await ok(['narinfo', '--store', cache, top]), keys), narinfoLines(fs.readFileSync(path.join(xz, `${hashOf(top)}.narinfo`), 'utf8'), keys))
    // zstd, and over HTTP.
    for (const other of [`nix+file://${zstd}`, server.url]) assert.ok((await runCli(['export-nar', '--store', other, top])).stdout.equals(NixStore.dump(top)), other)
    await fails(['ls', '--store', `nix+file://${root}/nowhere`, top], /^error: no binary cache at nix\+file:\/\/.*\/nowhere \(it has no nix-cache-info\)$/)
    await fails(['ls', '--store', `nix+file://${xz}`, `/nix/store/${'0'.repeat(32)}-absent`], /is not valid/)
  })

  describe('bad caches: a clear error, the target as it was', () => {
    const target = path.join(root, 'bad-target')
    let before: string[]
    /** A copy of the xz cache to spoil. */
    const spoilt = (name: string) => {
      const dir = path.join(root, name)
      fs.cpSync(xz, dir, { recursive: true })
      return dir
    }
    const narOf = (dir: string, p: string) => path.join(dir, /^URL: (.*)$/m.exec(fs.readFileSync(path.join(dir, `${hashOf(p)}.narinfo`), 'utf8'))![1]!)
    const copyFrom = (url: string, ...more: string[]) => ['copy', '--from', url, '--to', target, '--trusted-public-keys', publicKey, ...more, top]
    const unchanged = () => assert.deepEqual(snapshot(target), before)

    test('set-up: a target holding something', async () => {
      await ok(['import', '--store', target, path.join(root, 'diamond.nix')])
      before = snapshot(target)
    })

    test('a tampered NAR file: its FileHash no longer matches', async () => {
      const dir = spoilt('tampered')
      // xz ignores stream padding, so the file still decodes to the same NAR: only FileHash and FileSize catch it.
      fs.appendFileSync(narOf(dir, leaf), Buffer.alloc(4))
      await fails(copyFrom(`nix+file://${dir}`), new RegExp(`^error: cannot add path '${leaf}' from binary cache '.*': file 'nar/.*' has \\d+ bytes, not the FileSize \\d+ of its narinfo$`))
      const corrupt = spoilt('corrupt')
      const nar = narOf(corrupt, leaf)
      const bytes = fs.readFileSync(nar)
      bytes[bytes.length >> 1] ^= 0xff
      fs.writeFileSync(nar, bytes)
      await fails(copyFrom(`nix+file://${corrupt}`), new RegExp(`^error: cannot add path '${leaf}' from binary cache '.*': `))
      unchanged()
    })

    test('a narinfo whose NarHash lies: refused for its signature, and for the hash with --no-check-sigs', async () => {
      const dir = spoilt('lying')
      const file = path.join(dir, `${hashOf(leaf)}.narinfo`)
      const other = /^NarHash: (.*)$/m.exec(fs.readFileSync(path.join(dir, `${hashOf(top)}.narinfo`), 'utf8'))![1]!
      fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(/^NarHash: .*$/m, `NarHash: ${other}`))
      await fails(copyFrom(`nix+file://${dir}`), /lacks a valid signature by a trusted key/)
      await fails(copyFrom(`nix+file://${dir}`, '--no-check-sigs'), new RegExp(`^error: cannot add path '${leaf}' from binary cache '.*': NAR hash mismatch: the narinfo says ${other}, the NAR has sha256:[a-z0-9]{52}$`))
      unchanged()
    })

    test('a narinfo naming a reference the cache lacks', async () => {
      const dir = spoilt('no-leaf')
      fs.rmSync(path.join(dir, `${hashOf(leaf)}.narinfo`))
      await fails(copyFrom(`nix+file://${dir}`), new RegExp(`^error: path '${leaf}', a reference of '/nix/store/[a-z0-9]{32}-fx-(left|right)', is not in binary cache 'nix\\+file://${dir}'$`))
      const noNar = spoilt('no-nar')
      fs.rmSync(narOf(noNar, leaf))
      await fails(copyFrom(`nix+file://${noNar}`), /^error: file 'nar\/[a-z0-9]{52}\.nar\.xz' does not exist in binary cache 'nix\+file:\/\/.*'$/)
      unchanged()
    })

    test('http: a 500 that passes is retried, one that stays is an error; a connection dropped mid-NAR is retried', async () => {
      const leafNar = new RegExp(`^/${path.relative(xz, narOf(xz, leaf)).replace(/\./g, '\\.')}$`)
      const leafGets = () => server.requests.filter((r) => leafNar.test(r.slice(4)) && r.startsWith('GET')).length
      Object.assign(server.faults, { match: leafNar, status: 500, times: 100, dropAfter: undefined })
      server.requests.length = 0
      await fails(copyFrom(server.url), /^error: HTTP 500 for http:\/\/127\.0\.0\.1:\d+\/nar\/.*$/)
      assert.equal(leafGets(), 4, 'four attempts in all')
      unchanged()

      Object.assign(server.faults, { match: leafNar, status: 500, times: 2 })
      server.requests.length = 0
      const store = path.join(root, 'retried')
      await ok(copyFrom(server.url).map((a) => (a === target ? store : a)))
      assert.equal(leafGets(), 3)
      await assertSameInfos(store)

      Object.assign(server.faults, { match: leafNar, status: undefined, dropAfter: 40, times: 1 })
      server.requests.length = 0
      const dropped = path.join(root, 'dropped')
      await ok(copyFrom(server.url).map((a) => (a === target ? dropped : a)))
      assert.equal(leafGets(), 2)
      assert.ok((await runCli(['export-nar', '--store', dropped, leaf])).stdout.equals(NixStore.dump(leaf)))
    })
  })
})
