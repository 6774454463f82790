/**
 * Small blob Puts through a daemon are staged and committed together (the
 * daemon's put window, src/daemon/put-window.ts): a Put is visible through
 * the daemon when it returns, and durable once its window is committed,
 * which happens before any Directory or PathInfo Put is served. These
 * tests hold what the README promises for that: the bytes and paths of
 * imports through the daemon are Nix's, a Put is visible at once to other
 * connections, SIGTERM commits what was put, and a daemon SIGKILLed after
 * acknowledging Puts leaves every blob whole or absent, and every blob a
 * Directory it accepted names present.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { openStore } from '../../src/backends/open-store.js'
import { readAll } from '../../src/castore/blob-service.js'
import { b3 } from '../../src/castore/digest.js'
import type { Directory } from '../../src/castore/directory.js'
import type { Store } from '../../src/store/store.js'
import { forEachLimit } from '../../src/util/pool.js'
import { runCli } from '../helpers/cli.js'
import { startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-put-window-'))
after(() => fs.rmSync(root, { recursive: true, force: true }))

async function ok(args: string[]): Promise<Buffer> {
  const r = await runCli(args)
  assert.equal(r.code, 0, `${args.join(' ')}: exit ${r.code}: ${r.stderr}`)
  return r.stdout
}

/** `n` distinct small blobs (up to 4 KiB), seeded. */
function blobs(n: number, seed: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => randomBytes(1 + ((i * 997) % 4096), seed + i))
}

/** The blob's bytes as `store` reads them (checked against its digest), or undefined if absent. */
async function read(store: Store, data: Buffer): Promise<Buffer | undefined> {
  const src = await store.blobs.open(b3(data))
  return src && readAll(src)
}

describe('small blob Puts through a daemon are committed in windows', { skip: nixMissing() }, () => {
  const nix = new NixStore(path.join(root, 'nix'))
  let trees: string[] = []
  before(() => {
    trees = [makeTree(root, 'wide'), makeTree(root, 'mixed')]
  })

  test("imports through the daemon give nix-store --add's paths and export nix-store --dump's bytes, from the daemon and from its folder after", async () => {
    const store = path.join(root, 'import-store')
    const daemon = await startDaemon(store, `unix:${path.join(root, 'import.sock')}`)
    const paths: string[] = []
    try {
      for (const tree of trees) {
        const p = (await ok(['import', '--store', daemon.url, tree])).toString().trim()
        assert.equal(p, nix.add(tree), tree)
        paths.push(p)
        assert.ok((await ok(['export-nar', '--store', daemon.url, p])).equals(NixStore.dump(tree)), `${tree} through the daemon`)
      }
    } finally {
      assert.equal(await daemon.stop(), 0, daemon.log())
    }
    for (const [i, p] of paths.entries()) assert.ok((await ok(['export-nar', '--store', store, p])).equals(NixStore.dump(trees[i]!)), `${trees[i]} from the folder`)
    // The 2,000 small files of 'wide' went into a bundle, not a file each.
    assert.ok(fs.readdirSync(path.join(store, 'blobs/bundles')).some((n) => n.endsWith('.bundle')), 'no bundle was written')
    await ok(['verify', '--store', store])
  })

  test('a Put is visible through the daemon, on another connection, when it returns', async () => {
    const store = path.join(root, 'visible-store')
    const daemon = await startDaemon(store, `unix:${path.join(root, 'visible.sock')}`)
    const writer = await openStore({ url: daemon.url })
    const reader = await openStore({ url: daemon.url })
    try {
      for (const data of blobs(40, 100)) {
        await writer.blobs.put(data)
        assert.equal(await reader.blobs.has(b3(data)), true)
        assert.ok((await read(reader, data))?.equals(data))
      }
    } finally {
      await writer.close()
      await reader.close()
      assert.equal(await daemon.stop(), 0, daemon.log())
    }
  })

  test('SIGTERM commits every blob put before it', async () => {
    const store = path.join(root, 'term-store')
    const daemon = await startDaemon(store, `unix:${path.join(root, 'term.sock')}`)
    const sent = blobs(60, 200)
    const client = await openStore({ url: daemon.url })
    try {
      await forEachLimit(sent, 16, async (d) => void (await client.blobs.put(d)))
    } finally {
      await client.close()
    }
    assert.equal(await daemon.stop(), 0, daemon.log())
    const local = await openStore({ url: store })
    for (const d of sent) assert.ok((await read(local, d))?.equals(d), 'a blob put before SIGTERM is missing')
    await ok(['verify', '--store', store])
  })

  test('a daemon SIGKILLed after acknowledging Puts leaves each blob whole or absent, and all that an accepted Directory names', async () => {
    const store = path.join(root, 'kill-store')
    // A window longer than the test: only what the daemon must commit (before the Directory Put) is committed.
    const daemon = await startDaemon(store, `unix:${path.join(root, 'kill.sock')}`, ['--put-window', '10m'])
    const named = blobs(40, 300)
    const loose = blobs(60, 400)
    const client = await openStore({ url: daemon.url })
    try {
      await forEachLimit(named, 16, async (d) => void (await client.blobs.put(d)))
      const dir: Directory = {
        directories: [],
        files: named.map((d, i) => ({ kind: 'file' as const, name: Buffer.from(`f${String(i).padStart(3, '0')}`), digest: b3(d), size: d.length, executable: false })),
        symlinks: [],
      }
      await client.directories.putClosure([dir])
      // Acknowledged, and not yet committed when the daemon dies.
      await forEachLimit(loose, 16, async (d) => void (await client.blobs.put(d)))
      daemon.proc.kill('SIGKILL')
      await new Promise((resolve) => daemon.proc.once('exit', resolve))
    } finally {
      await client.close()
    }
    const local = await openStore({ url: store })
    for (const d of named) assert.ok((await read(local, d))?.equals(d), 'a blob an accepted Directory names is missing')
    for (const d of loose) {
      const got = await read(local, d)
      if (got) assert.ok(got.equals(d))
    }
    await ok(['verify', '--store', store])
    // The dead daemon's staged files are gc's to remove.
    await ok(['gc', '--store', store])
    assert.deepEqual(fs.readdirSync(path.join(store, 'tmp')), [])
  })
})
