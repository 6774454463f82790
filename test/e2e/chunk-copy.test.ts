import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { runCli } from '../helpers/cli.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { randomBytes } from '../helpers/trees.js'

/**
 * `copy` of a tree with a large file each way a local store takes part in
 * (local → local, daemon → local, local → daemon): the NAR the target
 * exports is the one `nix-store --dump` gives for the tree, and a second
 * copy after a small edit to the large file moves only its changed chunks
 * where the target is local (a daemon target takes blobs whole: the gRPC
 * protocol has no put from a chunk list).
 */
describe('copy moves large files by their chunks', { skip: nixMissing() }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-chunk-copy-'))
  const tree = path.join(root, 'tree')
  const big = randomBytes(6 << 20, 606)
  const edited = Buffer.from(big)
  edited.write('a small edit somewhere in the middle', 3 << 20)
  const src = path.join(root, 'src')
  let daemon: RunningDaemon
  /** The tree as a store path and as `nix-store --dump` gives it: with the file as it was, then after the edit. */
  let [p1, p2, nar1, nar2] = ['', '', Buffer.alloc(0), Buffer.alloc(0)] as [string, string, Buffer, Buffer]

  const ok = async (args: string[]) => {
    const r = await runCli(args)
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
    return r.stdout
  }
  const copy = async (from: string, to: string, p: string) => JSON.parse((await ok(['copy', '--json', '--from', from, '--to', to, p])).toString())
  const writeTree = (data: Buffer) => {
    fs.mkdirSync(tree, { recursive: true })
    fs.writeFileSync(path.join(tree, 'big.bin'), data)
    fs.writeFileSync(path.join(tree, 'small.txt'), 'small\n')
  }

  before(async () => {
    writeTree(big)
    nar1 = NixStore.dump(tree)
    p1 = (await ok(['import', '--store', src, tree])).toString().trim()
    writeTree(edited)
    nar2 = NixStore.dump(tree)
    p2 = (await ok(['import', '--store', src, tree])).toString().trim()
    daemon = await startDaemon(path.join(root, 'served'), `127.0.0.1:${await freePort()}`)
    // The daemon's store gets both versions from the local one (local → daemon, whole blobs).
    for (const p of [p1, p2]) assert.deepEqual((await copy(src, daemon.url, p)).copied, [p])
  })
  after(async () => {
    assert.equal(await daemon.stop(), 0)
    fs.rmSync(root, { recursive: true, force: true })
  })

  test('each way, the target exports the NAR nix-store --dump gives', async () => {
    assert.ok((await ok(['export-nar', '--store', daemon.url, p1])).equals(nar1), 'local → daemon')
    for (const [way, from] of [
      ['local → local', src],
      ['daemon → local', daemon.url],
    ] as const) {
      const target = path.join(root, `fresh-${way.split(' ')[0]}`)
      const first = await copy(from, target, p1)
      assert.equal(first.bytes, big.length + 'small\n'.length, way)
      assert.ok((await ok(['export-nar', '--store', target, p1])).equals(nar1), way)
    }
  })

  test('after a small edit, only the changed chunks of the large file move to a local target', async () => {
    for (const [way, from] of [
      ['local → local', src],
      ['daemon → local', daemon.url],
    ] as const) {
      const target = path.join(root, `edit-${way.split(' ')[0]}`)
      await copy(from, target, p1)
      const second = await copy(from, target, p2)
      assert.deepEqual(second.copied, [p2], way)
      assert.deepEqual(second.blobs, { copied: 1, skipped: 1 }, way)
      // The edit falls in one or two chunks of at most 256 KiB each.
      assert.ok(second.bytes > 0 && second.bytes <= 512 * 1024, `${way}: ${second.bytes} bytes of ${big.length} moved`)
      assert.ok((await ok(['export-nar', '--store', target, p2])).equals(nar2), way)
    }
  })
})
