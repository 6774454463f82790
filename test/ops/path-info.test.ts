/**
 * path-info's op and text rendering in-process against memory:// stores,
 * compared with `nix path-info` byte for byte: the Nix-built diamond
 * closure (references, deriver) and imported trees whose sizes test Nix's
 * rounding. test/e2e/path-info.test.ts keeps a sample through the CLI and
 * what only the CLI shows (--json, exit codes, error lines, a daemon).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { importClosure, parseClosureListing } from '../../src/ops/import-closure.js'
import { importPath } from '../../src/ops/import-paths.js'
import type { Store } from '../../src/store/store.js'
import { NixStore, nixMissing, nixPathInfo, withoutUltimate } from '../helpers/nix.js'
import { buildNixClosure } from '../helpers/nix-closure.js'
import { memoryStore, pathInfoOutput } from '../helpers/ops.js'
import { makeSizeSamples } from '../helpers/trees.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ops-path-info-'))
const built = buildNixClosure(root)
if (built.skip) console.log(`skipping the path-info ops against a Nix-built closure: ${built.skip}`)
const missing = nixMissing()
if (missing) console.log(`skipping the path-info ops against a private Nix store: ${missing}`)

const nix = nixPathInfo

after(() => fs.rmSync(root, { recursive: true, force: true }))

describe('path-info (in-process, memory://) against nix path-info on a Nix-built closure', { skip: built.skip }, () => {
  const { top, byName } = built.closure ?? { top: '', byName: {} as Record<string, string> }
  let store: Store
  before(async () => {
    store = await memoryStore()
    await importClosure(store, parseClosureListing(JSON.stringify(built.closure!.listing)))
  })
  after(async () => {
    await store?.close()
  })

  test('text: byte for byte the same for each combination of flags, one path and several', async () => {
    for (const flags of [[], ['-r'], ['-s'], ['-rs'], ['-rS'], ['-rsS'], ['-rsSh'], ['--recursive', '--size', '--closure-size', '--human-readable']]) {
      assert.equal(await pathInfoOutput(store, flags, [top]), await nix([...flags, top]), flags.join(' '))
    }
    // Several paths, a path inside a store path and a repeated one.
    const several = [byName['fx-right']!, `${byName['fx-left']}/ref`, byName['fx-leaf']!, byName['fx-right']!]
    for (const flags of [[], ['-sS'], ['-rsS']]) {
      assert.equal(await pathInfoOutput(store, flags, several), await nix([...flags, ...several]), `several ${flags.join(' ')}`)
    }
  })

  test('--sigs: the same columns, less the ultimate flag we do not have', async () => {
    for (const flags of [['-r', '--sigs'], ['-rsS', '--sigs']]) {
      assert.equal(await pathInfoOutput(store, flags, [top]), withoutUltimate(await nix([...flags, top])), flags.join(' '))
    }
  })

  test('--all lists every path, as the closure of the top', async () => {
    assert.equal(await pathInfoOutput(store, ['--all', '-sS'], []), await nix(['-rsS', top]))
  })
})

describe('path-info (in-process, memory://) against nix path-info on imported trees', { skip: missing }, () => {
  const nixStore = new NixStore(path.join(root, 'nix'))
  const paths: string[] = []
  let store: Store
  before(async () => {
    store = await memoryStore()
    for (const input of makeSizeSamples(path.join(root, 'src'))) {
      const theirs = nixStore.add(input)
      assert.equal((await importPath(store, input)).storePath, theirs)
      paths.push(theirs)
    }
  })
  after(async () => {
    await store?.close()
  })

  test('text as nix path-info prints it for the same paths, and for --all', async () => {
    const n = ['--store', nixStore.url]
    for (const flags of [['-s'], ['-sh'], ['-sSh'], ['-sS', '--sigs'], ['--sigs']]) {
      assert.equal(await pathInfoOutput(store, flags, paths), await nix([...n, ...flags, ...paths]), flags.join(' '))
    }
    assert.equal(await pathInfoOutput(store, ['--all', '-sh'], []), await nix([...n, '--all', '-sh']))
  })

  test('a path inside a store path names the store path, as with Nix', async () => {
    const dir = paths.find((p) => p.endsWith('-dir'))!
    for (const sub of [`${dir}/sub/x`, `${dir}/link`, `${dir}/no-such-file`]) {
      assert.equal(await pathInfoOutput(store, ['-s'], [sub]), await nix(['--store', nixStore.url, '-s', sub]), sub)
    }
  })
})
