import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing, runNix } from '../helpers/nix.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

const SKIP = nixMissing()
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cache-e2e-'))

const ok = async (args: string[]) => {
  const r = await runCli(args)
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

describe('--cache-store: a local cache in front of a daemon', { skip: SKIP }, () => {
  const nix = new NixStore(path.join(root, 'nix'))
  let daemon: RunningDaemon
  let tree: string
  let storePath: string
  const near = path.join(root, 'near')
  /** What real Nix prints for the same tree: the bytes every read through the cache must give. */
  const nixSays = new Map<string, Buffer>()
  const reads = () => [['ls', '-lR'], ['ls', '--json', '-R'], ['cat', '/big.bin'], ['cat', '/sub/a.txt'], ['export-nar']]
  const argsOf = (r: string[]) => (r[0] === 'cat' ? ['cat', storePath + r[1]] : [...r, storePath])

  before(async () => {
    tree = makeTree(root, 'mixed', 'app')
    // Several MiB: a blob that streams in many pieces (and that a local store packs into chunks).
    fs.writeFileSync(path.join(tree, 'big.bin'), randomBytes(6 << 20, 12))
    storePath = nix.add(tree)
    for (const r of reads()) {
      const nixArgs = r[0] === 'export-nar' ? null : ['store', r[0]!, '--store', nix.url, ...r.slice(1).filter((a) => !a.startsWith('/')), r[0] === 'cat' ? storePath + r[1] : storePath]
      const out = nixArgs ? await runNix('nix', nixArgs) : { code: 0, stdout: NixStore.dump(tree), stderr: '' }
      assert.equal(out.code, 0, out.stderr)
      nixSays.set(r.join(' '), out.stdout)
    }
    daemon = await startDaemon(path.join(root, 'far'), `127.0.0.1:${await freePort()}`)
    assert.equal((await ok(['import', '--store', daemon.url, tree])).toString().trim(), storePath)
  })
  after(async () => {
    await daemon.stop()
  })

  test('ls, cat and export-nar through the cache give the bytes Nix gives; a second read needs no daemon', async () => {
    for (const r of reads()) {
      const out = await ok([...argsOf(r), '--store', daemon.url, '--cache-store', near])
      assert.ok(out.equals(nixSays.get(r.join(' '))!), `${r.join(' ')} through the cache`)
    }
    // The cache is a store on its own: it holds the path, its tree and its blobs.
    assert.ok((await ok(['export-nar', '--store', near, storePath])).equals(nixSays.get('export-nar')!))
    assert.equal(await daemon.stop(), 0)
    // With the daemon gone, any gRPC read would fail the command: these are served by the cache alone.
    for (const r of reads()) {
      const out = await ok([...argsOf(r), '--store', daemon.url, '--cache-store', near])
      assert.ok(out.equals(nixSays.get(r.join(' '))!), `${r.join(' ')} again, from the cache alone`)
    }
    // What the cache lacks still goes to the daemon: one error line.
    const missing = await runCli(['cat', '--store', daemon.url, '--cache-store', near, '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw/x'])
    assert.equal(missing.code, 1)
    assertOneErrorLine(missing.stderr, /cannot reach the tvix-store daemon/)
  })

  test('TVIX_CACHE_STORE names the cache too; a bad cache URL is one usage error', async () => {
    const r = await runCli(['ls', '--store', path.join(root, 'empty'), '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'], { env: { TVIX_CACHE_STORE: 'bogus://x' } })
    assert.equal(r.code, 2)
    assertOneErrorLine(r.stderr, /unknown store URL scheme "bogus:"/)
  })
})

describe('daemon --store … --cache-store …: a daemon serving a cache in front of another daemon', { skip: SKIP }, () => {
  test('serves the far daemon\'s bytes, and keeps serving them once the far daemon is gone', async () => {
    const tree = makeTree(root, 'odd-names', 'served')
    const want = NixStore.dump(tree)
    const far = await startDaemon(path.join(root, 'far2'), `127.0.0.1:${await freePort()}`)
    let front: RunningDaemon | undefined
    try {
      const p = (await ok(['import', '--store', far.url, tree])).toString().trim()
      front = await startDaemon(far.url, `127.0.0.1:${await freePort()}`, ['--cache-store', path.join(root, 'near2')])
      assert.ok((await ok(['export-nar', '--store', front.url, p])).equals(want))
      assert.equal(await far.stop(), 0)
      assert.ok((await ok(['export-nar', '--store', front.url, p])).equals(want))
    } finally {
      await far.stop()
      if (front) assert.equal(await front.stop(), 0)
    }
  })
})
