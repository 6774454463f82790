/**
 * Rendering a NAR into reused buffers (RenderOptions.lend, NarEncoder's
 * reuse): a consumer done with each piece before it asks for the next gets
 * the NAR's bytes while the pieces share a few buffers; a consumer that
 * keeps every piece (no lend) never sees one filled again.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { openLocalStore } from '../../../src/backends/local/index.js'
import type { LocalStore } from '../../../src/backends/local/index.js'
import { importPath } from '../../../src/ops/import-paths.js'
import type { Imported } from '../../../src/ops/register.js'
import { NarEncoder } from '../../../src/store/nar/encoder.js'
import { renderNar } from '../../../src/store/nar/render.js'
import { randomBytes, rng } from '../../helpers/trees.js'

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest()

describe('NAR rendered into reused buffers', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-render-lend-'))
  let store: LocalStore
  let imported: Imported

  before(async () => {
    // Small files (bundled, read in place), a few over the 64 KiB copied inline, and one stored as a pack.
    const tree = path.join(root, 'tree')
    const r = rng(14)
    for (let i = 0; i < 4000; i++) {
      const dir = path.join(tree, `d${i % 17}`)
      fs.mkdirSync(dir, { recursive: true })
      fs.writeFileSync(path.join(dir, `f${i}`), randomBytes(Math.floor(r() * 2000), i))
    }
    for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(tree, `m${i}`), randomBytes(100_000 + i, 500 + i))
    fs.writeFileSync(path.join(tree, 'large'), randomBytes(3 << 20, 900))
    store = await openLocalStore(path.join(root, 'store'))
    imported = await importPath(store, tree)
  })
  after(async () => {
    await store.close()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test('lent: each piece, taken before the next is asked for, is the NAR; the pieces share buffers', async () => {
    const copies: Buffer[] = []
    const seen = new Map<ArrayBufferLike, number>()
    for await (const piece of renderNar(imported.info.node, store, { lend: true })) {
      copies.push(Buffer.from(piece))
      seen.set(piece.buffer, (seen.get(piece.buffer) ?? 0) + 1)
    }
    const nar = Buffer.concat(copies)
    assert.equal(nar.length, imported.narSize)
    assert.deepEqual(sha256(nar), Buffer.from(imported.narSha256))
    // ~4 MiB of small files' NAR in 256 KiB pieces, each fresh memory were it not reused; then the larger files' own buffers.
    assert.ok(copies.length > 20 && seen.size <= 8, `${copies.length} pieces in ${seen.size} buffers`)
  })

  test('not lent: every piece kept to the end is still the NAR', async () => {
    const kept: Uint8Array[] = []
    for await (const piece of renderNar(imported.info.node, store)) kept.push(piece)
    const nar = Buffer.concat(kept)
    assert.equal(nar.length, imported.narSize)
    assert.deepEqual(sha256(nar), Buffer.from(imported.narSha256))
  })
})

describe('NarEncoder reuse', () => {
  /** The pieces of a NAR of 1,000 files of 100 bytes, and what each held when it was handed out (pieces of 8 KiB: larger than Node's pool, so each buffer is memory of its own). */
  function encode(reuse: 'sink' | 'reclaim' | undefined, reclaimEvery: number) {
    const pieces: Uint8Array[] = []
    const atHandOut: Buffer[] = []
    let givenBack = 0
    const nar = new NarEncoder(
      (c) => {
        pieces.push(c)
        atHandOut.push(Buffer.from(c))
      },
      { flushAt: 8192, copyBelow: 512, reuse },
    )
    nar.begin()
    nar.directory()
    for (let i = 0; i < 1000; i++) {
      nar.entry(Buffer.from(`f${String(i).padStart(3, '0')}`))
      nar.regular(false, 100)
      nar.contents(randomBytes(100, i))
      nar.endContents(100)
      nar.endEntry()
      if (reuse === 'reclaim' && i % reclaimEvery === reclaimEvery - 1) {
        // Until given back, every piece handed out since the last reclaim holds what it held then.
        for (let k = givenBack; k < pieces.length; k++) assert.deepEqual(Buffer.from(pieces[k]!), atHandOut[k], `piece ${k} before reclaim`)
        givenBack = pieces.length
        nar.reclaim()
      }
    }
    nar.endDirectory()
    nar.flush()
    return { pieces, atHandOut }
  }

  test("'reclaim': a piece not given back is never filled again; given back, it is", () => {
    const { pieces, atHandOut } = encode('reclaim', 200)
    const expected = Buffer.concat(encode(undefined, 1).atHandOut)
    assert.deepEqual(Buffer.concat(atHandOut), expected)
    assert.ok(new Set(pieces.map((p) => p.buffer)).size < pieces.length, 'buffers were filled again')
  })

  test("'sink': the sink sees each piece whole; one or two buffers serve them all", () => {
    const { pieces, atHandOut } = encode('sink', 1)
    assert.deepEqual(Buffer.concat(atHandOut), Buffer.concat(encode(undefined, 1).atHandOut))
    assert.ok(new Set(pieces.map((p) => p.buffer)).size <= 2)
  })

  test('no reuse: every piece is memory of its own', () => {
    const { pieces, atHandOut } = encode(undefined, 1)
    assert.deepEqual(Buffer.concat(pieces), Buffer.concat(atHandOut))
    assert.equal(new Set(pieces.map((p) => p.buffer)).size, pieces.length)
  })
})
