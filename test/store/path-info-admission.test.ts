import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { type B3Digest, toHex } from '../../src/castore/digest.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { InvalidInputError } from '../../src/errors.js'
import { importPath } from '../../src/ops/import-paths.js'
import { admitPathInfo, type AdmissionStore } from '../../src/store/path-info-admission.js'
import type { PathInfo } from '../../src/store/path-info.js'
import { parseBasename } from '../../src/store/store-path.js'
import { makeTree } from '../helpers/trees.js'

/*
 * The admission of a content-addressed PathInfo from elsewhere (a daemon's
 * Put) checks the tree, bounds its NAR size and renders the NAR to check its
 * hash: three walks over the same Directories. Each Directory is read from
 * the store once.
 */
let dir: string
const store = openMemoryStore()
let info: PathInfo

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-admission-reads-'))
  const tree = makeTree(dir, 'deep')
  fs.mkdirSync(path.join(tree, 'side/inner'), { recursive: true })
  fs.writeFileSync(path.join(tree, 'side/inner/f'), 'f\n')
  const { storePath } = await importPath(store, tree)
  info = (await store.pathInfos.get(parseBasename(path.basename(storePath)).digest))!
  assert.ok(info.narinfo?.ca, 'an imported tree is content-addressed: its admission renders the NAR')
})
after(() => fs.rmSync(dir, { recursive: true, force: true }))

/** The store, with its own path not stored yet (as for a Put), counting reads of each Directory. */
function counting(narInfo: PathInfo): { view: AdmissionStore; reads: Map<string, number> } {
  const reads = new Map<string, number>()
  const count = (d: B3Digest) => reads.set(toHex(d), (reads.get(toHex(d)) ?? 0) + 1)
  const view: AdmissionStore = {
    storeDir: store.storeDir,
    blobs: store.blobs,
    directories: {
      get: (d) => {
        count(d)
        return store.directories.get(d)
      },
    },
    pathInfos: { get: async (d) => (toHex(d) === toHex(parseBasename(Buffer.from(narInfo.node.name).toString()).digest) ? undefined : store.pathInfos.get(d)) },
  }
  return { view, reads }
}

test('admitting a content-addressed tree reads each of its Directories once', async () => {
  const { view, reads } = counting(info)
  const admitted = await admitPathInfo(info, view)
  assert.equal(admitted.stored, undefined)
  // 50 nested folders, the root, side/ and side/inner/.
  assert.equal(reads.size, 53)
  assert.deepEqual([...reads.entries()].filter(([, n]) => n !== 1), [])
})

test('a NAR hash the tree does not render to is still refused', async () => {
  const { view } = counting(info)
  const wrong: PathInfo = { ...info, narinfo: { ...info.narinfo!, narSize: info.narinfo!.narSize + 8 } }
  await assert.rejects(admitPathInfo(wrong, view), (e: unknown) => e instanceof InvalidInputError && /the tree's NAR has hash/.test(e.message))
})
