/**
 * `copy --to nix+file://…` and `copy --to http://…`: real Nix 2.8 reads the
 * binary caches we write (nix copy --from, nix path-info --store), with
 * every compression we write, signed by a key Nix generated (checked by Nix
 * against trusted-public-keys) and unsigned; what it gets equals the
 * original paths. Faults of an HTTP cache: a 4xx on a PUT is one error
 * line, a transient 5xx is retried.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneErrorLine, assertOneJsonError, runCli } from '../helpers/cli.js'
import { type FileCacheServer, startFileCacheServer } from '../helpers/file-cache-server.js'
import { NixStore, runNix, nixOut } from '../helpers/nix.js'
import { buildNixClosure, importNixClosure } from '../helpers/nix-closure.js'
import { makeTree } from '../helpers/trees.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cache-target-'))
const built = buildNixClosure(root)
const skip = built.skip
if (skip) console.log(`skipping the binary cache target tests: ${skip}`)

/** `copy --store STORE --to URL PATHS --json`, which must succeed: its report. */
async function copyTo(store: string, url: string, paths: string[]): Promise<{ copied: string[]; skipped: string[]; bytes: number }> {
  const r = await runCli(['copy', '--store', store, '--to', url, '--json', ...paths])
  assert.equal(r.code, 0, `copy --to ${url}: ${r.stderr}`)
  return JSON.parse(r.stdout.toString()) as { copied: string[]; skipped: string[]; bytes: number }
}

type NixInfo = { path: string; narHash: string; narSize: number; references: string[]; deriver?: string; url?: string; downloadHash?: string; downloadSize?: number; signatures?: string[] }

describe('copy --to a Nix binary cache: Nix reads what we wrote', { skip }, () => {
  const closure = built.closure!
  const store = path.join(root, 'store')
  const tree = makeTree(root, 'mixed', 'tree')
  let treePath: string
  let publicKey: string
  let secretKeyFile: string
  /** Every path we copy, and the originals Nix has (the tree from nix-store --add, the closure in /nix/store). */
  let all: string[]
  const original = (p: string) => (p === treePath ? tree : p)
  const hashPart = (p: string) => path.basename(p).slice(0, 32)

  before(async () => {
    const imported = await runCli(['import', '--store', store, tree])
    assert.equal(imported.code, 0, imported.stderr)
    treePath = imported.stdout.toString().trim()
    await importNixClosure(closure, store)
    // A key pair Nix generated: signatures we make with its secret, Nix checks with its public half.
    secretKeyFile = path.join(root, 'secret.key')
    await nixOut('nix-store', ['--generate-binary-cache-key', 'tvix-target-test-1', secretKeyFile, path.join(root, 'public.key')])
    publicKey = fs.readFileSync(path.join(root, 'public.key'), 'utf8')
    all = [treePath, ...closure.listing.map((e) => e.path)].sort()
  })

  /** `nix copy --from CACHE` of the tree and the closure into a fresh chroot store: Nix's result, and the store. */
  async function nixCopyFrom(cache: string, flags: string[]): Promise<{ code: number; stderr: string; target: NixStore }> {
    const target = new NixStore(fs.mkdtempSync(path.join(root, 'nix-')))
    const r = await runNix('nix', ['copy', '--from', cache, '--to', target.url, ...flags, treePath, closure.top])
    return { code: r.code, stderr: r.stderr, target }
  }

  /** Each path in Nix's target store dumps to the NAR of the original. */
  function assertSameNars(target: NixStore): void {
    for (const p of all) assert.ok(NixStore.dump(path.join(target.root, p)).equals(NixStore.dump(original(p))), p)
  }

  test('nix+file://: every compression, signed; Nix checks the signatures, and nix path-info agrees with Nix on every field', async () => {
    const dir = path.join(root, 'file-cache')
    const url = (compression: string) => `nix+file://${dir}?compression=${compression}&secret-key=${secretKeyFile}`
    // One path per compression, references first, so one Nix run reads all five.
    const plan: Array<[string, string]> = [
      [closure.byName['fx-leaf']!, 'none'],
      [closure.byName['fx-right']!, 'zstd'],
      [closure.byName['fx-left']!, 'bzip2'],
      [closure.top, 'xz'],
      [treePath, 'br'],
    ]
    for (const [p, compression] of plan) assert.deepEqual((await copyTo(store, url(compression), [p])).copied, [p], compression)
    assert.equal(fs.readFileSync(path.join(dir, 'nix-cache-info'), 'utf8'), 'StoreDir: /nix/store\n')

    const { code, stderr, target } = await nixCopyFrom(`file://${dir}`, ['--option', 'trusted-public-keys', publicKey])
    assert.equal(code, 0, stderr)
    assertSameNars(target)

    const served = (JSON.parse(await nixOut('nix', ['path-info', '--json', '--recursive', '--store', `file://${dir}`, treePath, closure.top])) as NixInfo[]).sort((a, b) => (a.path < b.path ? -1 : 1))
    const ours = JSON.parse((await runCli(['path-info', '--json', '--recursive', '--store', store, treePath, closure.top])).stdout.toString()) as NixInfo[]
    const pick = (e: NixInfo) => ({ path: e.path, narHash: e.narHash, narSize: e.narSize, references: e.references })
    assert.deepEqual(served.map(pick), ours.map(pick))
    // Against Nix's own records of the closure too, derivers included.
    for (const e of closure.listing) assert.deepEqual({ ...pick(served.find((s) => s.path === e.path)!), deriver: served.find((s) => s.path === e.path)!.deriver }, { ...pick(e), deriver: e.deriver })
    const ext: Record<string, string> = { none: '.nar', zstd: '.nar.zst', bzip2: '.nar.bz2', xz: '.nar.xz', br: '.nar.br' }
    for (const [p, compression] of plan) {
      const e = served.find((s) => s.path === p)!
      assert.ok(e.url!.endsWith(ext[compression]!), `${compression}: ${e.url}`)
      assert.equal(e.downloadSize, fs.statSync(path.join(dir, e.url!)).size)
      assert.deepEqual(e.signatures!.map((s) => s.split(':')[0]), ['tvix-target-test-1'])
    }

    // Our own reader takes it back too, trusting the key (every compression, every signature checked).
    const back = path.join(root, 'back')
    const r = await runCli(['copy', '--from', `nix+file://${dir}`, '--to', back, '--trusted-public-keys', publicKey, treePath, closure.top])
    assert.equal(r.code, 0, r.stderr)
    const backInfo = JSON.parse((await runCli(['path-info', '--json', '--recursive', '--store', back, treePath, closure.top])).stdout.toString()) as NixInfo[]
    assert.deepEqual(backInfo.map(pick), ours.map(pick))
  })

  test('compression=none, signed, with listings: byte for byte the narinfos and NAR files nix copy --to file:// writes for the same paths and key, the same .ls listings', async () => {
    const ours = path.join(root, 'ours-none')
    const nixs = path.join(root, 'nix-none')
    const query = `compression=none&secret-key=${secretKeyFile}&write-nar-listing=true`
    await copyTo(store, `nix+file://${ours}?${query}`, [treePath, closure.top])
    // Nix writes the closure from /nix/store, the tree from a private store holding it.
    await nixOut('nix', ['copy', '--to', `file://${nixs}?${query}`, closure.top])
    const nixStore = new NixStore(path.join(root, 'nix-tree'))
    assert.equal(nixStore.add(tree), treePath)
    await nixOut('nix', ['copy', '--store', nixStore.url, '--to', `file://${nixs}?${query}`, treePath])
    const files = (dir: string) => [...fs.readdirSync(dir).filter((f) => f.endsWith('.narinfo')), ...fs.readdirSync(path.join(dir, 'nar')).map((f) => `nar/${f}`)].sort()
    assert.deepEqual(files(ours), files(nixs))
    assert.equal(files(ours).length, 2 * all.length)
    for (const f of files(nixs)) assert.ok(fs.readFileSync(path.join(ours, f)).equals(fs.readFileSync(path.join(nixs, f))), f)
    const listings = (dir: string) => fs.readdirSync(dir).filter((f) => f.endsWith('.ls')).sort()
    assert.deepEqual(listings(ours), listings(nixs))
    assert.equal(listings(ours).length, all.length)
    for (const f of listings(nixs)) assert.deepEqual(JSON.parse(fs.readFileSync(path.join(ours, f), 'utf8')), JSON.parse(fs.readFileSync(path.join(nixs, f), 'utf8')), f)
  })

  describe('http:// (a plain server that stores PUTs)', () => {
    const dir = path.join(root, 'http-cache')
    let server: FileCacheServer
    before(async () => {
      fs.mkdirSync(dir)
      server = await startFileCacheServer(dir, { writable: true })
    })
    after(() => server?.close())

    test('unsigned, Nix\'s default compression: Nix refuses the input-addressed paths unless --no-check-sigs, then gets the originals; a second copy skips all', async () => {
      assert.deepEqual((await copyTo(store, server.url, [treePath, closure.top])).copied, all)
      assert.deepEqual(server.requests.slice(0, 2), ['GET /nix-cache-info', 'PUT /nix-cache-info'])
      assert.ok(server.requests.every((r) => !r.startsWith('PUT ') || /^PUT \/(nix-cache-info|[0-9a-z]{32}\.narinfo|nar\/[0-9a-z]{52}\.nar\.xz)$/.test(r)), server.requests.join('\n'))

      const refused = await nixCopyFrom(server.url, [])
      assert.notEqual(refused.code, 0)
      assert.match(refused.stderr, /lacks a valid signature/)
      const { code, stderr, target } = await nixCopyFrom(server.url, ['--no-check-sigs'])
      assert.equal(code, 0, stderr)
      assertSameNars(target)

      server.requests.length = 0
      const again = await copyTo(store, server.url, [closure.top])
      assert.deepEqual([again.copied, again.skipped.length, again.bytes], [[], closure.listing.length, 0])
      assert.ok(server.requests.every((r) => !r.startsWith('PUT ')), server.requests.join('\n'))
    })

    test('a transient 500 on a PUT is retried and the copy succeeds; a 4xx is one error line (exit 1) and no narinfo', async () => {
      const sub = (name: string) => {
        fs.mkdirSync(path.join(dir, name))
        return `${server.url}/${name}`
      }
      const retried = sub('retried')
      Object.assign(server.faults, { match: /^\/retried\/nar\//, method: 'PUT', status: 500, times: 1 })
      assert.deepEqual((await copyTo(store, `${retried}?compression=zstd&secret-key=${secretKeyFile}`, [treePath])).copied, [treePath])
      assert.equal(server.requests.filter((r) => r.startsWith('PUT /retried/nar/')).length, 2)
      assert.ok(fs.existsSync(path.join(dir, 'retried', `${hashPart(treePath)}.narinfo`)))

      const refusing = sub('refusing')
      for (const json of [false, true]) {
        Object.assign(server.faults, { match: /^\/refusing\/.*\.narinfo$/, method: 'PUT', status: 403, times: 1 })
        const r = await runCli(['copy', '--store', store, '--to', `${refusing}?compression=none`, treePath, ...(json ? ['--json'] : [])])
        assert.equal(r.code, 1)
        const message = new RegExp(`cannot upload ${hashPart(treePath)}\\.narinfo to ${refusing}: HTTP 403: injected 403$`)
        if (json) assertOneJsonError(r.stderr, 'ERR_BACKEND', message)
        else assertOneErrorLine(r.stderr, message)
        assert.equal(fs.existsSync(path.join(dir, 'refusing', `${hashPart(treePath)}.narinfo`)), false)
      }
    })
  })
})
