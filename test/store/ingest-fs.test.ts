/**
 * Importing a folder into a local store, against `nix-store --add` and
 * `nix-store --dump`: a tree where many files share contents (empty files,
 * copies, a copy made executable), which one import stages once each, and
 * entries whose type the walk must not take from the folder listing alone.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { readAll } from '../../src/castore/blob-service.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { stageTree } from '../../src/castore/tree-stage.js'
import { ingestPath } from '../../src/store/ingest-fs.js'
import { InvalidInputError } from '../../src/errors.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { assertSameBytes } from '../helpers/same-bytes.js'
import { randomBytes } from '../helpers/trees.js'

const SKIP = nixMissing()
if (SKIP) console.log(SKIP)

/** Every file below `dir` (recursively), relative to it. */
function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
}

/** 40 empty files, 40 copies of one small file, two copies of another that differ only in the executable bit, symlinks to a file and a folder. */
function makeDuplicates(dest: string): void {
  for (let d = 0; d < 4; d++) {
    const sub = path.join(dest, `d${d}`)
    fs.mkdirSync(sub, { recursive: true })
    for (let i = 0; i < 10; i++) {
      fs.writeFileSync(path.join(sub, `empty${i}`), '')
      fs.writeFileSync(path.join(sub, `same${i}.txt`), 'the same few bytes\n')
    }
  }
  fs.writeFileSync(path.join(dest, 'plain'), randomBytes(5000, 1))
  fs.writeFileSync(path.join(dest, 'tool'), randomBytes(5000, 1), { mode: 0o755 })
  fs.symlinkSync('plain', path.join(dest, 'to-file'))
  fs.symlinkSync('d0', path.join(dest, 'to-dir'))
}

test('a tree of repeated contents: store path and NAR as Nix makes them, one blob per content, no temp file left', { skip: SKIP }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ingest-fs-'))
  const input = path.join(tmp, 'dups')
  makeDuplicates(input)
  const nix = new NixStore(path.join(tmp, 'nix'))
  const store = await openLocalStore(path.join(tmp, 'ours'))
  const ours = await importPath(store, input)
  assert.equal(ours.storePath, nix.add(input))
  assertSameBytes(await readAll(await exportNar(store, ours.storePath)), NixStore.dump(input), 'export-nar vs nix-store --dump')
  // Distinct contents: empty, the shared small file, the 5000 random bytes.
  assert.equal(filesUnder(path.join(tmp, 'ours', 'blobs')).length, 3)
  assert.deepEqual(fs.readdirSync(path.join(tmp, 'ours', 'tmp')), [])
})

test('a FIFO in the tree is refused with the path named, and no store is created', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ingest-fs-'))
  const input = path.join(tmp, 'with-fifo')
  fs.mkdirSync(input)
  fs.writeFileSync(path.join(input, 'a'), 'a\n')
  execFileSync('mkfifo', [path.join(input, 'b')])
  fs.writeFileSync(path.join(input, 'c'), 'c\n')
  const store = await openLocalStore(path.join(tmp, 'ours'))
  await assert.rejects(importPath(store, input), (e) => e instanceof InvalidInputError && e.message === `file '${path.join(input, 'b')}' has an unsupported type`)
  assert.deepEqual(fs.readdirSync(tmp).sort(), ['with-fifo'])
})

/** Large files (streamed, stored as packs): incompressible, compressible and executable, one repeating its own chunks, one just over the streaming threshold. */
function makeLarge(dest: string): void {
  fs.mkdirSync(path.join(dest, 'bin'), { recursive: true })
  fs.writeFileSync(path.join(dest, 'random'), randomBytes(5 << 20, 2))
  const text = Buffer.from(Array.from({ length: 60_000 }, (_, i) => `line ${i} of a log that compresses well\n`).join(''))
  fs.writeFileSync(path.join(dest, 'bin', 'tool'), text, { mode: 0o755 })
  const block = randomBytes(1 << 20, 3)
  fs.writeFileSync(path.join(dest, 'repeats'), Buffer.concat([block, block, block, randomBytes(12345, 4)]))
  fs.writeFileSync(path.join(dest, 'just-over'), randomBytes((1 << 20) + 1, 5))
}

test('large files: store path and NAR as Nix makes them, and again from a store that has their chunks', { skip: SKIP }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ingest-fs-'))
  const input = path.join(tmp, 'large')
  makeLarge(input)
  const expected = new NixStore(path.join(tmp, 'nix')).add(input)
  const store = await openLocalStore(path.join(tmp, 'ours'))
  for (let round = 0; round < 2; round++) {
    const ours = await importPath(store, input)
    assert.equal(ours.storePath, expected)
    assertSameBytes(await readAll(await exportNar(store, ours.storePath)), NixStore.dump(input), `round ${round}: export-nar vs nix-store --dump`)
  }
  assert.deepEqual(fs.readdirSync(path.join(tmp, 'ours', 'tmp')), [])
})

for (const [how, change] of [
  ['grows', (file: string) => fs.appendFileSync(file, 'more bytes')],
  ['shrinks', (file: string) => fs.truncateSync(file, 3 << 20)],
] as const) {
  test(`a large file that ${how} while it is read is refused, and no store is created`, async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ingest-fs-'))
    const input = path.join(tmp, 'changing')
    fs.mkdirSync(input)
    const file = path.join(input, 'big')
    fs.writeFileSync(file, randomBytes(8 << 20, 6))
    const store = await openLocalStore(path.join(tmp, 'ours'))
    let changed = false
    // Progress is reported as each piece is read: change the file after the first.
    const onProgress = (bytes: number) => {
      if (bytes > 0 && !changed) {
        changed = true
        change(file)
      }
    }
    await assert.rejects(importPath(store, input, { onProgress }), (e) => e instanceof InvalidInputError && e.message === `file '${file}' changed while it was being imported`)
    assert.ok(changed)
    assert.deepEqual(fs.readdirSync(tmp).sort(), ['changing'])
  })
}

test('a walk whose stage sends its puts on a connection (turnBytes) lets the event loop turn as it reads, and one without reads on', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ingest-turns-'))
  try {
    // 40 files of 1,000 bytes, in two folders.
    for (const d of ['a', 'b']) {
      fs.mkdirSync(path.join(tmp, d))
      for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(tmp, d, `f${i}`), randomBytes(1000, i + (d === 'a' ? 0 : 100)))
    }
    /** Turns of the event loop while `tmp` is ingested into a stage whose puts settle at once (no I/O of their own). */
    const turnsDuring = async (turnBytes: number | undefined): Promise<number> => {
      const store = openMemoryStore()
      const stage = stageTree(store)
      let turns = 0
      let walking = true
      const tick = () => {
        if (!walking) return
        turns++
        setImmediate(tick)
      }
      setImmediate(tick)
      await ingestPath(tmp, { ...stage, blobs: { ...stage.blobs, turnBytes, put: stage.blobs.put.bind(stage.blobs) } })
      walking = false
      return turns
    }
    // 40,000 bytes at 4,000 between turns: at least 10 turns; the reads alone never wait for the loop.
    assert.ok((await turnsDuring(4000)) >= 10)
    assert.equal(await turnsDuring(undefined), 0)
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
})
