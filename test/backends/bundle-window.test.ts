/**
 * MemberReader's read-ahead window: members read in the order they are
 * stored come out of one read of the bundle, each a copy that a later read
 * never overwrites; any order gives the same bytes; and a member corrupted
 * on disk still fails its check when it comes from the window.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { MemberReader, readBundleIndex } from '../../src/backends/local/bundle.js'
import { type LocalStore, openLocalStore } from '../../src/backends/local/index.js'
import { readAll } from '../../src/castore/blob-service.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { IntegrityError } from '../../src/errors.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import { randomBytes, rng } from '../helpers/trees.js'
import { flipByte } from '../helpers/corrupt.js'

describe('bundle members read ahead', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bundle-window-'))
  const contents = new Map<string, Buffer>()
  let store: LocalStore
  let storePath: string
  let bundle: { file: string; members: Array<{ hex: string; offset: number; size: number }> }

  before(async () => {
    const tree = path.join(root, 'tree')
    fs.mkdirSync(tree)
    const r = rng(7)
    // ~600 KiB of files of up to 4 KiB: more than two windows' worth, in one bundle.
    for (let i = 0; i < 400; i++) {
      const data = randomBytes(1 + Math.floor(r() * 3000), 100 + i)
      fs.writeFileSync(path.join(tree, `f${String(i).padStart(3, '0')}`), data)
      contents.set(toHex(b3(data)), data)
    }
    store = await openLocalStore(path.join(root, 'store'))
    storePath = (await importPath(store, tree)).storePath
    const dir = path.join(root, 'store', 'blobs', 'bundles')
    const [name] = fs.readdirSync(dir)
    const file = path.join(dir, name!)
    const index = readBundleIndex(file, name!.split('.')[0]!)!
    bundle = { file, members: [...index.members()].sort((a, b) => a.offset - b.offset) }
    assert.ok(bundle.members.length > 350, `${bundle.members.length} members bundled`)
  })
  after(async () => {
    await store.close()
    fs.rmSync(root, { recursive: true, force: true })
  })

  for (const order of ['stored', 'reversed'] as const) {
    test(`read in ${order} order: every member's bytes, none overwritten by a later read`, () => {
      const reader = new MemberReader()
      const members = order === 'stored' ? bundle.members : [...bundle.members].reverse()
      const got = members.map((m) => ({ hex: m.hex, data: reader.read(bundle.file, m) }))
      // Into the caller's buffer as well: only its `size` bytes are written.
      const into = Buffer.alloc(5000, 0xee)
      const m = members[members.length >> 1]!
      reader.read(bundle.file, m, into)
      reader.close()
      for (const { hex, data } of got) assert.deepEqual(Buffer.from(data), contents.get(hex))
      assert.deepEqual(into.subarray(0, m.size), contents.get(m.hex))
      assert.ok(into.subarray(m.size).every((b) => b === 0xee))
    })
  }

  test('a member corrupted on disk fails the export at its file, read from the window or not', async () => {
    // A member well inside the bundle, so that it is served from a window read for the members before it.
    const victim = bundle.members[Math.floor(bundle.members.length * 0.7)]!
    fs.chmodSync(bundle.file, 0o644)
    flipByte(bundle.file, victim.offset, 0x01)
    const fresh = await openLocalStore(path.join(root, 'store'))
    try {
      await assert.rejects(async () => readAll(await exportNar(fresh, storePath)), (e: unknown) => e instanceof IntegrityError && /is corrupt/.test(e.message))
    } finally {
      await fresh.close()
    }
  })
})
