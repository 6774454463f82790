/**
 * Temp roots: what a daemon told a client is stored, or received from it,
 * stays until the client's connection closes, whatever gc's --grace.
 *
 * An upload through a daemon is several calls: it asks what the store has
 * (blob Stat, Directory Get, PathInfo Get), sends only the rest, then puts
 * its PathInfo. Each step here is a separate call of one client, and a
 * `gc --prune --grace 0` runs between the lookups and the PathInfo Puts,
 * when everything the client found is unreachable: without temp roots gc
 * deletes it and the daemon refuses the PathInfos (FAILED_PRECONDITION).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { openStore } from '../../src/backends/open-store.js'
import type { Node } from '../../src/castore/node.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { PathInfo } from '../../src/store/path-info.js'
import { parseBasename } from '../../src/store/store-path.js'
import type { Store } from '../../src/store/store.js'
import { runCli } from '../helpers/cli.js'
import { freePort, startDaemon } from '../helpers/daemon.js'
import { nixMissing, NixStore } from '../helpers/nix.js'
import { randomBytes } from '../helpers/trees.js'

const MiB = 1 << 20

/** Lock tokens and temp roots files the store's locks/ holds (the epoch file aside). */
const lockFiles = (store: string) => (fs.existsSync(path.join(store, 'locks')) ? fs.readdirSync(path.join(store, 'locks')).filter((n) => n !== 'epoch') : [])

async function mustRun(args: string[]): Promise<string> {
  const r = await runCli(args)
  assert.equal(r.code, 0, `${args.join(' ')}: exit ${r.code}: ${r.stderr}`)
  return r.stderr
}

/** What gc's summary line says it deleted: [paths, objects]. */
function deleted(stderr: string): [number, number] {
  const m = /(\d+) store paths? deleted, (\d+) objects?/.exec(stderr)
  return m ? [Number(m[1]), Number(m[2])] : [0, 0]
}

/** The file blobs and Directories under `node`, as the client reads them through the daemon. */
async function treeOf(client: Store, node: Node): Promise<{ blobs: Uint8Array[]; dirs: Uint8Array[] }> {
  if (node.kind === 'file') return { blobs: [node.digest], dirs: [] }
  if (node.kind !== 'directory') return { blobs: [], dirs: [] }
  const blobs: Uint8Array[] = []
  for await (const d of client.directories.getClosure(node.digest)) for (const f of d.files) blobs.push(f.digest)
  return { blobs, dirs: [node.digest] }
}

describe('a daemon keeps what its clients found or sent until they disconnect', { skip: nixMissing() }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-temproots-'))
  const nix = new NixStore(path.join(root, 'nix'))
  const trees: Record<string, { dir: string; storePath: string; nar: Buffer }> = {}

  before(() => {
    fs.mkdirSync(nix.root, { recursive: true })
    // app: a chunked pack, small files, a subdirectory; dep: a single file; kept: a path that stays registered.
    const app = path.join(root, 'trees', 'app')
    fs.mkdirSync(path.join(app, 'lib'), { recursive: true })
    fs.writeFileSync(path.join(app, 'big.bin'), randomBytes(2 * MiB, 1))
    fs.writeFileSync(path.join(app, 'lib', 'a.txt'), 'a\n')
    fs.writeFileSync(path.join(app, 'README'), 'app\n')
    fs.writeFileSync(path.join(root, 'trees', 'dep'), randomBytes(5000, 2))
    fs.mkdirSync(path.join(root, 'trees', 'kept'))
    fs.writeFileSync(path.join(root, 'trees', 'kept', 'k'), 'kept\n')
    for (const name of ['app', 'dep', 'kept']) {
      const dir = path.join(root, 'trees', name)
      trees[name] = { dir, storePath: nix.pathOf(dir), nar: NixStore.dump(dir) }
    }
  })

  after(() => fs.rmSync(root, { recursive: true, force: true }))

  test('blobs, Directories and paths a client found stored outlive gc --prune --grace 0 until its PathInfo Puts', async () => {
    const store = path.join(root, 'store')
    for (const name of ['app', 'dep', 'kept']) {
      const out = (await runCli(['import', '--store', store, trees[name]!.dir])).stdout.toString().trim()
      assert.equal(out, trees[name]!.storePath, `import ${name} printed another path than Nix`)
    }
    // What the client will upload: app's and dep's PathInfos as the store has them, and a path
    // (not content-addressed, so any name will do) referring to `kept`.
    const local = await openStore({ url: store })
    const info = async (name: string) => (await local.pathInfos.get(parseBasename(path.basename(trees[name]!.storePath)).digest))!
    const [appInfo, depInfo] = [await info('app'), await info('dep')]
    await local.close()
    const kept = parseBasename(path.basename(trees.kept!.storePath))
    const refName = `${nixbase32.encode(new Uint8Array(20).fill(3))}-uses-kept`
    const user: PathInfo = {
      node: { ...depInfo.node, name: new TextEncoder().encode(refName) },
      references: [kept.digest],
      narinfo: { ...depInfo.narinfo!, ca: undefined, referenceNames: [path.basename(trees.kept!.storePath)] },
    }
    // app and dep go (their data stays, unreachable, as an interrupted upload leaves it); kept stays, unrooted.
    await mustRun(['gc', '--store', store, '--delete', '--grace', '1h', trees.app!.storePath, trees.dep!.storePath])

    const daemon = await startDaemon(store, `127.0.0.1:${await freePort()}`)
    try {
      const client = await openStore({ url: daemon.url })
      try {
        // The lookups of an upload: everything is there, so nothing would be sent.
        for (const i of [appInfo, depInfo]) {
          const { blobs, dirs } = await treeOf(client, i.node)
          for (const b of blobs) assert.equal(await client.blobs.has(b), true)
          for (const d of dirs) assert.ok(await client.directories.get(d))
        }
        assert.ok(await client.pathInfos.get(kept.digest))

        // Everything the client found is unreachable now, and older than no grace at all.
        const gc = await mustRun(['gc', '--store', store, '--prune', '--grace', '0'])
        assert.deepEqual(deleted(gc), [0, 0], `gc deleted what the client was told is stored: ${gc}`)

        for (const i of [appInfo, depInfo, user]) await client.pathInfos.put(i)
      } finally {
        await client.close()
      }
      for (const name of ['app', 'dep']) {
        const r = await runCli(['export-nar', '--store', daemon.url, trees[name]!.storePath])
        assert.equal(r.code, 0, r.stderr)
        assert.ok(r.stdout.equals(trees[name]!.nar), `export-nar ${name} differs from nix-store --dump`)
      }
      const v = await runCli(['verify', '--store', store])
      assert.equal(v.code, 0, `verify: ${v.stdout}${v.stderr}`)

      // The client is gone: the daemon releases its roots once it sees the connection close.
      while (lockFiles(store).some((n) => n.startsWith('temproots-'))) await sleep(50)
      const last = await mustRun(['gc', '--store', store, '--prune', '--grace', '0'])
      assert.equal(deleted(last)[0], 4, `the unrooted paths did not go once the client left: ${last}`)
    } finally {
      assert.equal(await daemon.stop(), 0, daemon.log())
    }
  })

  test("a killed daemon's temp roots are ignored, and removed, by gc", async () => {
    const store = path.join(root, 'store-killed')
    const out = (await runCli(['import', '--store', store, trees.dep!.dir])).stdout.toString().trim()
    assert.equal(out, trees.dep!.storePath)
    await mustRun(['gc', '--store', store, '--delete', '--grace', '1h', trees.dep!.storePath])
    const daemon = await startDaemon(store, `127.0.0.1:${await freePort()}`)
    const client = await openStore({ url: daemon.url })
    try {
      assert.equal(await client.blobs.has(blobDigestOf(store)), true)
      assert.ok(lockFiles(store).some((n) => n.startsWith('temproots-')), 'no temp roots file after a Stat that found a blob')
      daemon.proc.kill('SIGKILL')
      await daemon.stop()
      const gc = await mustRun(['gc', '--store', store, '--grace', '0'])
      assert.deepEqual(deleted(gc), [0, 1], `gc kept the blob a dead daemon's client had found: ${gc}`)
      assert.deepEqual(lockFiles(store), [], 'the dead daemon left files in locks/')
    } finally {
      await client.close()
      daemon.proc.kill('SIGKILL')
    }
  })
})

/** The one blob a store holds (the single-file path's contents). */
function blobDigestOf(store: string): Uint8Array {
  const base = path.join(store, 'blobs', 'b3')
  const [shard] = fs.readdirSync(base)
  return Buffer.from(fs.readdirSync(path.join(base, shard!))[0]!, 'hex')
}
