import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { importClosure, parseClosureListing } from '../../src/ops/import-closure.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { makeTree } from '../helpers/trees.js'

const SKIP = nixMissing()

test('a listing with a reference found nowhere is refused before any path is imported', { skip: SKIP }, async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-import-closure-'))
  const nix = new NixStore(path.join(root, 'nix'))
  const good = nix.add(makeTree(root, 'mixed'))
  const [entry] = JSON.parse(nix.run('nix', ['path-info', '--json', '--store', nix.url, good]).toString())
  const unknown = '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'
  // Listed first, `good` could be imported before the second entry is looked at.
  const bad = { ...entry, path: '/nix/store/5mdmy1apg46f58gk1j8qwp1p5nrmx88z-bad', references: [unknown] }
  const store = openMemoryStore()
  await assert.rejects(importClosure(store, parseClosureListing(JSON.stringify([entry, bad])), { nixRoot: nix.root }), new RegExp(`refers to ${unknown.slice(11, 43)}, which is neither in the listing nor in the store`))
  const left = []
  for await (const info of store.pathInfos.list()) left.push(info)
  assert.deepEqual(left, [])
})
