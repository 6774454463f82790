/**
 * ls and cat in-process against a memory:// store, compared with real
 * Nix's `nix store ls` / `nix store cat` on the same inputs: every seeded
 * tree, its sub-paths and flag combinations, and sub-paths spelled the
 * ways a shell user writes them. The commands print exactly what these
 * ops return (test/e2e/nix-interop.test.ts and subpath-interop.test.ts
 * keep a sample through the CLI, with its exit codes and error lines).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { readAll } from '../../src/castore/blob-service.js'
import { catFile } from '../../src/ops/cat.js'
import { importPath } from '../../src/ops/import-paths.js'
import type { Store } from '../../src/store/store.js'
import { NixStore, nixMissing, runNix } from '../helpers/nix.js'
import { lsOutput, memoryStore, outputOrError } from '../helpers/ops.js'
import { assertSameBytes } from '../helpers/same-bytes.js'
import { TREES, type Walked, makeSubpathTree, makeTree, walk } from '../helpers/trees.js'

const SKIP = nixMissing()
if (SKIP) console.log(`skipping ls/cat against Nix: ${SKIP}`)

/** Nix processes at once (2 cores). */
const NIX_AT_ONCE = 2

/**
 * Sub-paths (relative to the store path) that `ls` is compared on, each with
 * the flag sets to try. The root path always gets every variant in LS_ALL.
 */
const LS_ALL: string[][] = [[], ['-l'], ['-R'], ['-lR'], ['--json'], ['--json', '-R'], ['-d']]
const LS_DIR: string[][] = [['-lR'], ['--json', '-R'], ['-d']]
const LS_LEAF: string[][] = [['-l'], ['--json']]
const LS_SUBPATHS: Record<string, Array<[string, string[][]]>> = {
  mixed: [
    ['sub', LS_ALL],
    ['emptydir', LS_DIR],
    ['sub/a.txt', LS_LEAF],
    ['run.sh', LS_LEAF],
    ['link', LS_LEAF],
    ['sub/outside', LS_LEAF],
  ],
  'odd-names': [
    ['.dotdir', LS_DIR],
    ['ünïcödé ✓', LS_LEAF],
  ],
  'big-file': [['big.bin', LS_LEAF]],
  deep: [
    ['d0/d1/d2', LS_DIR],
    [Array.from({ length: 50 }, (_, i) => `d${i}`).join('/') + '/bottom.txt', LS_LEAF],
  ],
  wide: [['f1999', LS_LEAF]],
}

/** `storePath` or `storePath/rel`. */
const sp = (storePath: string, rel: string) => (rel ? `${storePath}/${rel}` : storePath)

/** The `error:` line of a failed Nix command (it may print warnings around it). */
const errorLine = (stderr: string) => stderr.split('\n').find((l) => l.startsWith('error:'))

/** Runs `fn` over `items`, `limit` at a time (each case waits on a Nix process). */
async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await fn(items[next++]!)
  }))
}

describe('ls and cat (in-process, memory://) against nix store ls/cat on every seeded tree', { skip: SKIP }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ops-ls-cat-'))
  const nix = new NixStore(path.join(root, 'nix'))
  const trees = new Map<string, { input: string; nixPath: string; walk: Walked }>()
  let store: Store

  before(async () => {
    store = await memoryStore()
    for (const kind of Object.keys(TREES)) {
      const input = makeTree(path.join(root, 'in'), kind)
      const nixPath = nix.add(input)
      const ours = await importPath(store, input)
      assert.equal(ours.storePath, nixPath, `${kind}: the store path nix-store --add prints`)
      trees.set(kind, { input, nixPath, walk: walk(input) })
    }
  })
  after(async () => {
    await store?.close()
    fs.rmSync(root, { recursive: true, force: true })
  })

  for (const kind of Object.keys(TREES)) {
    test(`${kind}: ls, every flag set on the root and on chosen sub-paths, prints what nix store ls prints`, async () => {
      const t = trees.get(kind)!
      const cases: Array<{ rel: string; flags: string[] }> = []
      for (const [rel, variants] of [['', LS_ALL] as [string, string[][]], ...(LS_SUBPATHS[kind] ?? [])]) {
        assert.ok([...t.walk.files, ...t.walk.dirs, ...t.walk.symlinks].includes(rel), `sub-path ${rel} exists in the input`)
        for (const flags of variants) cases.push({ rel, flags })
      }
      await eachLimit(cases, NIX_AT_ONCE, async ({ rel, flags }) => {
        const target = sp(t.nixPath, rel)
        const theirs = await runNix('nix', ['store', 'ls', '--store', nix.url, ...flags, target])
        assert.equal(theirs.code, 0, `nix store ls failed: ${theirs.stderr}`)
        assertSameBytes(await lsOutput(store, flags, target), theirs.stdout, `ls ${flags.join(' ')} ${target}`)
      })
    })

    test(`${kind}: cat of regular files gives what nix store cat gives and the input's bytes; of anything else, Nix's error`, async () => {
      const t = trees.get(kind)!
      // 20 of wide's 2000 files; the first directories and symlinks of each tree.
      const files = kind === 'wide' ? t.walk.files.filter((_, i) => i % 100 === 0) : t.walk.files
      const others = [...t.walk.dirs.slice(0, 2), ...t.walk.symlinks.slice(0, 3)]
      await eachLimit([...files, ...others], NIX_AT_ONCE, async (rel) => {
        const target = sp(t.nixPath, rel)
        const theirs = await runNix('nix', ['store', 'cat', '--store', nix.url, target])
        const ours = await outputOrError(async () => readAll(await catFile(store, target)))
        if (files.includes(rel)) {
          assert.equal(theirs.code, 0, `nix store cat failed: ${theirs.stderr}`)
          assert.ok(ours.ok, `cat ${target}: ${ours.ok || ours.error}`)
          assertSameBytes(ours.stdout, theirs.stdout, `cat ${target} vs nix store cat`)
          assertSameBytes(ours.stdout, fs.readFileSync(path.join(t.input, rel)), `cat ${target} vs input file`)
        } else {
          assert.notEqual(theirs.code, 0, 'nix store cat should fail')
          assert.ok(!ours.ok, `cat ${target} should fail`)
          assert.equal(ours.error + '\n', theirs.stderr, `cat ${target}: Nix's message`)
        }
      })
    })
  }
})

/**
 * Sub-paths written the many ways a shell user writes them (a trailing
 * slash, `//`, `.`), through cat and ls, against `nix store cat` and
 * `nix store ls` on the same path: same success, output and error line.
 */
describe('sub-path spelling agrees with nix store cat/ls (in-process)', { skip: SKIP }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ops-subpath-'))
  let nix: NixStore
  let store: Store
  let p: string

  before(async () => {
    store = await memoryStore()
    nix = new NixStore(path.join(root, 'nix'))
    const tree = makeSubpathTree(path.join(root, 'x'))
    p = (await importPath(store, tree)).storePath
    assert.equal(p, nix.add(tree))
  })
  after(async () => {
    await store?.close()
    fs.rmSync(root, { recursive: true, force: true })
  })

  // Not `..` inside a directory: Nix resolves it, we deliberately never resolve upwards (test/corpus/cases.ts).
  const subs = ['/a', '/a/', '/a//', '/a/.', '//a', '/./a', '/d/', '/d//b', '/d/./', '/d/b/..', '/l', '/l/', '/', '/./']
  const ops = {
    cat: async (arg: string) => readAll(await catFile(store, arg)),
    ls: (arg: string) => lsOutput(store, [], arg),
  }
  for (const cmd of ['cat', 'ls'] as const) {
    test(`${cmd}: ${subs.join(' ')}`, async () => {
      await eachLimit(subs, NIX_AT_ONCE, async (sub) => {
        const arg = p + sub
        const theirs = await runNix('nix', ['store', cmd, '--store', nix.url, arg])
        const mine = await outputOrError(() => ops[cmd](arg))
        assert.equal(mine.ok, theirs.code === 0, `${cmd} ${arg}: ours ${mine.ok || mine.error}, Nix ${theirs.code} ${theirs.stderr}`)
        if (mine.ok) assert.deepEqual(mine.stdout, theirs.stdout, `${cmd} ${arg}: stdout`)
        else assert.equal(mine.error, errorLine(theirs.stderr), `${cmd} ${arg}: error line`)
      })
    })
  }
})
