/**
 * `daemon --http-listen`: real Nix 2.8 reads our store as an `http://`
 * binary cache (nix copy --from, nix path-info, nix store ls), and what it
 * gets equals what Nix itself has for the same paths. Served narinfos are
 * signed (`--secret-key-file`) so that Nix checking signatures accepts
 * them; `.ls` listings equal Nix's; a dropped NAR download is resumed with
 * `Range`.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, runNix, nixOut } from '../helpers/nix.js'
import { buildNixClosure, importNixClosure } from '../helpers/nix-closure.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cache-serve-'))
const built = buildNixClosure(root)
const skip = built.skip
if (skip) console.log(`skipping the binary cache serving tests: ${skip}`)

describe('daemon --http-listen serves the store as a Nix binary cache', { skip }, () => {
  const closure = built.closure!
  const tree = makeTree(root, 'mixed', 'tree')
  // Nix's own store for the tree: its store path, listing and NAR are the references.
  const nixStore = new NixStore(path.join(root, 'nix'))
  let treePath: string
  let daemon: RunningDaemon
  let cache: string
  // Keys made by Nix: the daemon signs with `served`; `other` is a key Nix may trust instead.
  const keys = path.join(root, 'keys')
  const publicKey = (name: string) => fs.readFileSync(path.join(keys, `${name}.pk`), 'utf8')
  /** A tree with a NAR of a few MiB: a download of it can be cut mid-way. */
  const big = path.join(root, 'big')
  let bigPath: string

  before(async () => {
    fs.mkdirSync(keys)
    for (const name of ['served', 'other']) nixStore.run('nix-store', ['--generate-binary-cache-key', `${name}-1`, path.join(keys, `${name}.sk`), path.join(keys, `${name}.pk`)])
    fs.mkdirSync(big)
    fs.writeFileSync(path.join(big, 'blob'), randomBytes(3 << 20, 6))
    fs.writeFileSync(path.join(big, 'tail'), 'after the blob\n')
    const store = path.join(root, 'store')
    const imported = await runCli(['import', '--store', store, tree, big])
    assert.equal(imported.code, 0, imported.stderr)
    ;[treePath, bigPath] = imported.stdout.toString().trim().split('\n') as [string, string]
    assert.equal(treePath, nixStore.add(tree))
    await importNixClosure(closure, store)
    // Stored with the served key's signature already: it is served once, not twice.
    const signed = await runCli(['sign', '--store', store, '--secret-key-file', path.join(keys, 'served.sk'), closure.byName['fx-leaf']!])
    assert.equal(signed.code, 0, signed.stderr)
    daemon = await startDaemon(store, '127.0.0.1:0', ['--http-listen', '127.0.0.1:0', '--secret-key-file', path.join(keys, 'served.sk')])
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

  test('signed narinfos: Nix trusting our key substitutes without --no-check-sigs, Nix trusting another refuses', async () => {
    const trusting = (name: string) => ['--option', 'trusted-public-keys', publicKey(name)]
    const sigs = (await (await fetch(`${cache}/${path.basename(closure.byName['fx-leaf']!).slice(0, 32)}.narinfo`)).text()).match(/^Sig: .*$/gm)
    assert.equal(sigs?.length, 1, `one Sig: by the served key, stored or not: ${sigs?.join(', ')}`)
    // nix copy --from with signatures checked (Nix's default), then nix-store -r substituting, each into a fresh store.
    const copied = new NixStore(path.join(root, 'signed-copy'))
    await nixOut('nix', ['copy', '--from', cache, '--to', copied.url, ...trusting('served'), closure.top])
    const realised = new NixStore(path.join(root, 'signed-realise'))
    await nixOut('nix-store', ['--store', realised.url, '-r', closure.top, '--option', 'substituters', cache, ...trusting('served')])
    // The whole closure arrived; its bytes are compared in the first test, here only the top's (each dump is a process).
    const top = NixStore.dump(closure.top)
    for (const target of [copied, realised]) {
      for (const e of closure.listing) assert.ok(fs.existsSync(path.join(target.root, e.path)), `${target.root}: ${e.path}`)
      assert.ok(NixStore.dump(path.join(target.root, closure.top)).equals(top), target.root)
    }
    const refused = new NixStore(path.join(root, 'untrusted'))
    const r = await runNix('nix', ['copy', '--from', cache, '--to', refused.url, ...trusting('other'), closure.top])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr.toString(), /error: cannot add path '\/nix\/store\/[^']+' because it lacks a valid signature/)
    assert.equal(fs.existsSync(path.join(refused.root, closure.top)), false)
  })

  test('<hash>.ls equals the listing Nix writes with write-nar-listing=true', async () => {
    const written = path.join(root, 'listed')
    await nixOut('nix', ['copy', '--store', nixStore.url, '--to', `file://${written}?write-nar-listing=true&compression=none`, treePath])
    await nixOut('nix', ['copy', '--to', `file://${written}?write-nar-listing=true&compression=none`, closure.top])
    for (const p of [treePath, ...closure.listing.map((e) => e.path)]) {
      const hash = path.basename(p).slice(0, 32)
      const served = await fetch(`${cache}/${hash}.ls`)
      assert.equal(served.headers.get('content-type'), 'application/json')
      assert.deepEqual(JSON.parse(await served.text()), JSON.parse(fs.readFileSync(path.join(written, `${hash}.ls`), 'utf8')), p)
    }
    const head = await fetch(`${cache}/${path.basename(treePath).slice(0, 32)}.ls`, { method: 'HEAD' })
    assert.deepEqual([head.status, head.headers.get('content-type'), await head.text()], [200, 'application/json', ''])
    assert.equal((await fetch(`${cache}/${'0'.repeat(31)}a.ls`)).status, 404)
  })

  test('a NAR download cut mid-way is resumed by Nix with Range, and the result is whole', async () => {
    // A proxy in front of the cache that cuts the first NAR response after CUT bytes of its body.
    const CUT = 1 << 20
    const seen: Array<{ url: string; range?: string; status?: number }> = []
    let cut = false
    const proxy = http.createServer((req, res) => {
      const entry: { url: string; range?: string; status?: number } = { url: req.url!, range: req.headers.range }
      seen.push(entry)
      const upstream = http.request(`${cache}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
        entry.status = up.statusCode
        res.writeHead(up.statusCode!, up.headers)
        if (cut || !req.url!.startsWith('/nar/')) return void up.pipe(res)
        cut = true
        let sent = 0
        up.on('data', (c: Buffer) => {
          const room = CUT - sent
          sent += c.length
          if (room > c.length) return void res.write(c)
          res.write(c.subarray(0, room), () => {
            up.destroy()
            res.socket?.destroy()
          })
        })
      })
      upstream.on('error', () => res.destroy())
      req.pipe(upstream)
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    try {
      const target = new NixStore(path.join(root, 'resumed'))
      const via = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
      await nixOut('nix', ['copy', '--from', via, '--to', target.url, bigPath])
      assert.ok(NixStore.dump(path.join(target.root, bigPath)).equals(NixStore.dump(big)))
      const nars = seen.filter((e) => e.url.startsWith('/nar/'))
      assert.deepEqual(
        nars.map((e) => [e.range, e.status]),
        [
          [undefined, 200],
          [`bytes=${CUT}-`, 206],
        ],
      )
    } finally {
      proxy.closeAllConnections()
      await new Promise((resolve) => proxy.close(resolve))
    }
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

test('daemon --secret-key-file: a missing or bad key, or no --http-listen, is one error line before anything starts', async () => {
  const never = path.join(root, 'never')
  const publicOnly = path.join(root, 'public-only.pk')
  fs.writeFileSync(publicOnly, `cache-1:${Buffer.alloc(32, 1).toString('base64')}`)
  const cases: Array<[string[], number, RegExp]> = [
    [['--http-listen', '127.0.0.1:0', '--secret-key-file', path.join(root, 'absent.sk')], 1, /^error: cannot read the key file \S+absent\.sk: it does not exist$/],
    [['--http-listen', '127.0.0.1:0', '--secret-key-file', publicOnly], 1, /^error: secret key 'cache-1' is not valid: 32 bytes, want 64$/],
    [['--secret-key-file', publicOnly], 2, /^error: .*--http-listen/],
  ]
  for (const [args, code, line] of cases) {
    const r = await runCli(['daemon', '--store', never, '--listen', '127.0.0.1:0', ...args])
    assert.equal(r.code, code, r.stderr.toString())
    assertOneErrorLine(r.stderr.toString(), line)
    assert.equal(fs.existsSync(never), false)
  }
})
