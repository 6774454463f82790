/**
 * `daemon --http-listen`: real Nix 2.8 reads our store as an `http://`
 * binary cache (nix copy --from, nix path-info, nix store ls), and what it
 * gets equals what Nix itself has for the same paths.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, runNix } from '../helpers/nix.js'
import { buildNixClosure, importNixClosure } from '../helpers/nix-closure.js'
import { makeTree } from '../helpers/trees.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cache-serve-'))
const built = buildNixClosure(root)
const skip = built.skip
if (skip) console.log(`skipping the binary cache serving tests: ${skip}`)

/** Stdout of a Nix command that must succeed. */
async function nixOut(cmd: string, args: string[]): Promise<string> {
  const r = await runNix(cmd, args)
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout.toString()
}

describe('daemon --http-listen serves the store as a Nix binary cache', { skip }, () => {
  const closure = built.closure!
  const tree = makeTree(root, 'mixed', 'tree')
  // Nix's own store for the tree: its store path, listing and NAR are the references.
  const nixStore = new NixStore(path.join(root, 'nix'))
  let treePath: string
  let daemon: RunningDaemon
  let cache: string

  before(async () => {
    const store = path.join(root, 'store')
    const imported = await runCli(['import', '--store', store, tree])
    assert.equal(imported.code, 0, imported.stderr)
    treePath = imported.stdout.toString().trim()
    assert.equal(treePath, nixStore.add(tree))
    await importNixClosure(closure, store)
    daemon = await startDaemon(store, '127.0.0.1:0', ['--http-listen', '127.0.0.1:0'])
    // Logged before the "serving" line the helper waits for.
    cache = /Nix binary cache at (http:\/\/\S+)/.exec(daemon.log())![1]!
  })
  after(async () => {
    await daemon?.stop()
  })

  test('nix copy --from it gives the NARs Nix has', async () => {
    const target = new NixStore(path.join(root, 'copied'))
    await nixOut('nix', ['copy', '--from', cache, '--no-check-sigs', '--to', target.url, treePath, closure.top])
    // The chroot's files, dumped: a store path names /nix/store outside it.
    const inTarget = (p: string) => path.join(target.root, p)
    assert.ok(NixStore.dump(inTarget(treePath)).equals(NixStore.dump(tree)))
    for (const e of closure.listing) assert.ok(NixStore.dump(inTarget(e.path)).equals(NixStore.dump(e.path)), e.path)
  })

  test('nix path-info --store http://… agrees with Nix on the closure', async () => {
    const served = JSON.parse(await nixOut('nix', ['path-info', '--json', '--recursive', '--store', cache, closure.top])) as Array<Record<string, unknown>>
    served.sort((a, b) => (String(a.path) < String(b.path) ? -1 : 1))
    const pick = (e: Record<string, unknown>) => ({ path: e.path, narHash: e.narHash, narSize: e.narSize, references: e.references, deriver: e.deriver })
    assert.deepEqual(served.map(pick), closure.listing.map((e) => pick({ ...e })))
    // Uncompressed: the file Nix downloads is the NAR.
    for (const e of served) assert.deepEqual([e.downloadHash, e.downloadSize], [e.narHash, e.narSize])
  })

  test('nix store ls -lR --store http://… agrees with Nix', async () => {
    assert.equal(await nixOut('nix', ['store', 'ls', '-lR', '--store', cache, treePath]), await nixOut('nix', ['store', 'ls', '-lR', '--store', nixStore.url, treePath]))
    assert.equal(await nixOut('nix', ['store', 'ls', '-R', '--store', cache, closure.top]), await nixOut('nix', ['store', 'ls', '-R', closure.top]))
  })

  test('nix-cache-info, HEAD, and 4xx for what is absent or asked wrongly', async () => {
    const info = await fetch(`${cache}/nix-cache-info`)
    assert.equal(await info.text(), 'StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n')
    const hash = path.basename(treePath).slice(0, 32)
    const get = await fetch(`${cache}/${hash}.narinfo`)
    const text = await get.text()
    const head = await fetch(`${cache}/${hash}.narinfo`, { method: 'HEAD' })
    assert.deepEqual([head.status, head.headers.get('content-length'), await head.text()], [200, String(Buffer.byteLength(text)), ''])
    // An absent path, a name that is no hash, a NAR whose path now has other content, a PUT, a DELETE.
    const status = async (p: string, method = 'GET') => (await fetch(`${cache}${p}`, { method })).status
    assert.equal(await status('/0000000000000000000000000000000a.narinfo'), 404)
    assert.equal(await status('/0000000000000000000000000000000a.narinfo', 'HEAD'), 404)
    assert.equal(await status('/eeee0000000000000000000000000000.narinfo'), 400)
    assert.equal(await status(`/nar/${hash}-${'0'.repeat(52)}.nar`), 404)
    assert.equal(await status(`/nar/${hash}-${'0'.repeat(52)}.nar.xz`), 404)
    assert.equal(await status(`/${hash}.narinfo`, 'PUT'), 403)
    assert.equal(await status('/nix-cache-info', 'DELETE'), 405)
    assert.equal(await status('/'), 404)
  })
})

test('daemon --http-listen refuses what Nix cannot reach over HTTP: one error line, exit 2', async () => {
  const r = await runCli(['daemon', '--store', path.join(root, 'never'), '--http-listen', 'unix:/tmp/cache.sock'])
  assert.equal(r.code, 2)
  assertOneErrorLine(r.stderr.toString(), /^error: --http-listen "unix:\/tmp\/cache\.sock": want HOST:PORT or \[IPV6\]:PORT$/)
  assert.equal(fs.existsSync(path.join(root, 'never')), false)
})
