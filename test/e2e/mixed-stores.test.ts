/**
 * Stores whose services come from different places (`--blob-service-addr`,
 * `--directory-service-addr`): import, export-nar, ls, cat and copy end to
 * end, against real Nix on the same trees (store paths from `nix-store
 * --add`, NARs from `nix-store --dump`, listings from `nix store ls`).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type OpenStoreOptions, openStore } from '../../src/backends/open-store.js'
import { runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing, runNix } from '../helpers/nix.js'
import { exportNarOutput, lsOutput } from '../helpers/ops.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

const SKIP = nixMissing()

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-mixed-'))
const at = (name: string) => path.join(root, name)

const ok = async (args: string[]) => {
  const r = await runCli(args)
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** The files under a local store's folder of one kind (`blobs`, `dirs`, `pathinfo`): where the data landed. */
const filesIn = (store: string, kind: string): string[] => {
  const dir = path.join(store, kind)
  return fs.existsSync(dir) ? (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile()) : []
}

describe('mixed stores: blobs and Directories in one store, PathInfos in another', { skip: SKIP }, () => {
  let nix: NixStore
  /** Each tree with what Nix says of it: its store path, NAR, and `nix store ls` outputs. */
  const trees: Array<{ dir: string; path: string; nar: Buffer; ls: Map<string, string> }> = []
  const LS = [['ls', '-lR'], ['ls', '--json', '-R']]
  let plainStores = 0
  let daemon: RunningDaemon
  let mixedDaemon: RunningDaemon

  before(async () => {
    nix = new NixStore(at('nix'))
    const big = at('big')
    fs.mkdirSync(big)
    fs.writeFileSync(path.join(big, 'blob.bin'), randomBytes(3 << 20, 12)) // over 1 MiB: a chunked pack
    fs.writeFileSync(path.join(big, 'small'), 'small\n')
    for (const dir of [makeTree(root, 'mixed'), makeTree(root, 'single-file'), big]) {
      const t = { dir, path: nix.add(dir), nar: NixStore.dump(dir), ls: new Map<string, string>() }
      for (const args of LS) {
        const theirs = await runNix('nix', ['store', ...args, '--store', nix.url, t.path])
        assert.equal(theirs.code, 0, theirs.stderr.toString())
        t.ls.set(args.join(' '), theirs.stdout.toString())
      }
      trees.push(t)
    }
    // A daemon holding castore data for a local metadata store, and a daemon serving a mixed store itself.
    daemon = await startDaemon(at('daemon-store'), `unix:${at('d.sock')}`)
    mixedDaemon = await startDaemon(at('md-meta'), `unix:${at('md.sock')}`, ['--blob-service-addr', at('md-blobs')])
  })
  after(async () => {
    assert.equal(await daemon.stop(), 0)
    assert.equal(await mixedDaemon.stop(), 0)
    fs.rmSync(root, { recursive: true, force: true })
  })

  /**
   * import, export-nar, ls, cat and copy out, through the store `opts`
   * names; each answer against Nix's. The commands run through the CLI
   * with the store flags (the flags are the same for every command, so
   * import, export-nar, cat and copy prove them); the listings come from
   * the ls op on the same store opened in-process, and the NARs of the
   * copies from the plain store in-process, which saves a process each.
   */
  async function roundTrip(opts: OpenStoreOptions) {
    const flags = ['--store', opts.url!]
    if (opts.blobServiceAddr) flags.push('--blob-service-addr', opts.blobServiceAddr)
    if (opts.directoryServiceAddr) flags.push('--directory-service-addr', opts.directoryServiceAddr)
    for (const t of trees) {
      assert.equal((await ok(['import', ...flags, t.dir])).toString().trim(), t.path, `import ${t.dir}`)
      assert.ok((await ok(['export-nar', ...flags, t.path])).equals(t.nar), `export-nar ${t.path}: not nix-store --dump's bytes`)
    }
    const store = await openStore({ ...opts, mustExist: true })
    try {
      for (const t of trees) {
        for (const args of LS) assert.equal((await lsOutput(store, args.slice(1), t.path)).toString(), t.ls.get(args.join(' ')), `${args.join(' ')} ${t.path}`)
      }
    } finally {
      await store.close()
    }
    const mixed = trees[0]!.path
    assert.equal((await ok(['cat', ...flags, `${mixed}/sub/a.txt`])).toString(), 'abc')
    const big = trees[2]!.path
    assert.ok((await ok(['cat', ...flags, `${big}/blob.bin`])).equals(fs.readFileSync(path.join(trees[2]!.dir, 'blob.bin'))))
    // Copied out into a plain store, the same NARs again.
    const plain = at(`plain-${plainStores++}`)
    await ok(['copy', ...flags, '--to', plain, ...trees.map((t) => t.path)])
    for (const t of trees) assert.ok((await exportNarOutput(plain, t.path)).equals(t.nar), `export-nar ${t.path} after copy`)
  }

  test('local + local: --blob-service-addr (the blobs land there, the rest in --store)', async () => {
    const [meta, blobs] = [at('ll-meta'), at('ll-blobs')]
    await roundTrip({ url: meta, blobServiceAddr: blobs })
    assert.notDeepEqual(filesIn(blobs, 'blobs'), [])
    assert.deepEqual(filesIn(meta, 'blobs'), [])
    assert.notDeepEqual(filesIn(meta, 'pathinfo'), [])
    assert.deepEqual(filesIn(blobs, 'pathinfo'), [])
  })

  test('local + local: --directory-service-addr', async () => {
    const [meta, dirs] = [at('ld-meta'), at('ld-dirs')]
    await roundTrip({ url: meta, directoryServiceAddr: dirs })
    assert.notDeepEqual(filesIn(dirs, 'dirs'), [])
    assert.deepEqual(filesIn(meta, 'dirs'), [])
  })

  test('local + daemon: blobs and Directories on a daemon, PathInfos in a local folder', async () => {
    const meta = at('dm-meta')
    await roundTrip({ url: meta, blobServiceAddr: daemon.url, directoryServiceAddr: daemon.url })
    assert.notDeepEqual(filesIn(at('daemon-store'), 'blobs'), [])
    assert.deepEqual(filesIn(at('daemon-store'), 'pathinfo'), [])
    assert.notDeepEqual(filesIn(meta, 'pathinfo'), [])
    assert.deepEqual(filesIn(meta, 'blobs'), [])
  })

  test('a daemon serving a mixed store admits its PathInfo Puts against it (copy --to and import through it)', async () => {
    const source = at('md-source')
    for (const t of trees) await ok(['import', '--store', source, t.dir])
    const copied = JSON.parse((await ok(['copy', '--json', '--store', source, '--to', mixedDaemon.url, ...trees.map((t) => t.path)])).toString())
    assert.deepEqual(copied.copied, trees.map((t) => t.path).sort())
    for (const t of trees) assert.ok((await ok(['export-nar', '--store', mixedDaemon.url, t.path])).equals(t.nar), `export-nar ${t.path} through the daemon`)
    await roundTrip({ url: mixedDaemon.url })
    assert.notDeepEqual(filesIn(at('md-blobs'), 'blobs'), [])
    assert.deepEqual(filesIn(at('md-meta'), 'blobs'), [])
  })
})
