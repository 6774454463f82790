import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { openLocalStore } from '../../src/backends/local/index.js'
import { PACK_SUFFIX, readManifest } from '../../src/backends/local/pack.js'
import { readAll } from '../../src/castore/blob-service.js'
import { b3, bytesEqual } from '../../src/castore/digest.js'
import { importPath } from '../../src/ops/import-paths.js'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { randomBytes } from '../helpers/trees.js'

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((n) => path.join(dir, n)).filter((f) => fs.statSync(f).isFile())
}

/**
 * Small files whose contents are chunks of a large file already stored:
 * a store whose chunk index is loaded (as a daemon's is after its first
 * lookup of a chunk) keeps them only as those chunks of its pack, so
 * reading them goes through the chunk index and the packs kept open.
 */
describe('small blobs stored as chunks of a pack', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-local-reads-'))
  const store = path.join(root, 'store')
  const tree = path.join(root, 'tree')
  const big = randomBytes(4 << 20, 77)
  const FILES = 12
  let treePath: string
  let pack: string
  let chunks: Array<{ bytes: Buffer; offset: number }>

  before(async () => {
    fs.writeFileSync(path.join(root, 'big.bin'), big)
    const r = await runCli(['import', '--store', store, path.join(root, 'big.bin')])
    assert.equal(r.code, 0, r.stderr)
    const packs = filesUnder(path.join(store, 'blobs')).filter((f) => f.endsWith(PACK_SUFFIX))
    assert.equal(packs.length, 1)
    pack = packs[0]!
    const manifest = readManifest(pack, path.basename(pack, PACK_SUFFIX))!
    assert.ok(manifest.length > FILES)
    let at = 0
    chunks = manifest.map((c) => {
      assert.equal(c.codec, 0, 'random data is stored raw')
      const bytes = big.subarray(at, at + c.size)
      at += c.size
      return { bytes, offset: c.offset }
    })
    fs.mkdirSync(path.join(tree, 'sub'), { recursive: true })
    for (let i = 0; i < FILES; i++) fs.writeFileSync(path.join(tree, i % 2 ? 'sub' : '', `c${String(i).padStart(2, '0')}`), chunks[i]!.bytes)
    // A lookup of a chunk loads the index (an import of small files alone does not: it would read every pack's manifest).
    const s = await openLocalStore(store)
    assert.ok(await s.blobs.has(b3(chunks[0]!.bytes)))
    treePath = (await importPath(s, tree)).storePath
    // No blob of the tree became a file of its own: they are read from the pack.
    assert.deepEqual(
      filesUnder(path.join(store, 'blobs')).filter((f) => !f.endsWith(PACK_SUFFIX)),
      [],
    )
  })
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  test('export-nar writes the NAR nix-store --dump writes', { skip: nixMissing() }, async () => {
    const r = await runCli(['export-nar', '--store', store, treePath])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(r.stdout.equals(NixStore.dump(tree)), 'same bytes as nix-store --dump')
  })

  test('a corrupt chunk-stored file: no byte of it is written, cat and export-nar fail with one line', { skip: nixMissing() }, async () => {
    const nar = NixStore.dump(tree)
    const bad = 4
    const badFile = `c${String(bad).padStart(2, '0')}`
    const goodFile = `c${String(bad + 2).padStart(2, '0')}`
    // Where the bad file's contents begin in the NAR (its bytes are random: found once).
    const contentsAt = nar.indexOf(chunks[bad]!.bytes)
    assert.ok(contentsAt > 0)
    fs.chmodSync(pack, 0o644)
    const fd = fs.openSync(pack, 'r+')
    const at = chunks[bad]!.offset + 100
    fs.writeSync(fd, Buffer.from([chunks[bad]!.bytes[100]! ^ 0xff]), 0, 1, at)
    fs.closeSync(fd)
    try {
      const e = await runCli(['export-nar', '--store', store, treePath])
      assert.equal(e.code, 1, e.stderr)
      assertOneErrorLine(e.stderr, /corrupt/)
      assert.ok(e.stdout.length <= contentsAt, `${e.stdout.length} bytes written, the bad file's contents begin at ${contentsAt}`)
      assert.ok(e.stdout.equals(nar.subarray(0, e.stdout.length)), 'what was written is the true NAR')
      const c = await runCli(['cat', '--store', store, `${treePath}/${badFile}`])
      assert.equal(c.code, 1, c.stderr)
      assertOneErrorLine(c.stderr, /corrupt/)
      assert.equal(c.stdout.length, 0)
      // The pack's other chunks are still served.
      const ok = await runCli(['cat', '--store', store, `${treePath}/${goodFile}`])
      assert.equal(ok.code, 0, ok.stderr)
      assert.ok(ok.stdout.equals(chunks[bad + 2]!.bytes))
    } finally {
      const fd2 = fs.openSync(pack, 'r+')
      fs.writeSync(fd2, chunks[bad]!.bytes, 100, 1, at)
      fs.closeSync(fd2)
      fs.chmodSync(pack, 0o444)
    }
  })
})

describe('openNow with a size hint', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-size-hint-'))
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  test('gives the blob as stored whatever size it is told to expect', async () => {
    const s = await openLocalStore(path.join(root, 'store'))
    for (const size of [0, 5, 4096, 1 << 20, (1 << 20) + 1, 3 << 20]) {
      const data = randomBytes(size, size + 1)
      const { digest } = await s.blobs.put(data)
      assert.ok(bytesEqual(await readAll((await s.blobs.open(digest))!), data), `open, ${size} bytes`)
      for (const hint of [undefined, 0, Math.max(0, size - 1), size, size + 1, 1 << 20]) {
        const got = s.blobs.openNow(digest, hint)!
        const bytes = got instanceof Uint8Array ? got : await readAll(got)
        assert.equal(bytes.length, size, `${size} bytes, hint ${hint}`)
        assert.ok(bytesEqual(bytes, data), `${size} bytes, hint ${hint}`)
      }
    }
    assert.equal(s.blobs.openNow(b3(Buffer.from('absent'))), undefined)
  })
})
