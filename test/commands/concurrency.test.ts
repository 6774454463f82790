import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { runCli } from '../helpers/cli.js'
import { snapshot } from '../helpers/snapshot.js'
import { randomBytes } from '../helpers/trees.js'

describe('several processes writing one local store', () => {
  test('concurrent imports of overlapping trees into a store that does not exist yet', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-conc-'))
    const store = path.join(root, 'store')
    // Four trees sharing most of their files (same content, so the same blobs).
    const shared = Array.from({ length: 300 }, (_, i) => randomBytes(1 + (i % 97) * 37, i))
    const trees = [0, 1, 2, 3].map((t) => {
      const dir = path.join(root, `tree${t}`)
      fs.mkdirSync(path.join(dir, 'sub'), { recursive: true })
      shared.forEach((data, i) => fs.writeFileSync(path.join(dir, i % 2 ? 'sub' : '', `f${i}`), data))
      fs.writeFileSync(path.join(dir, 'own'), `tree ${t}`)
      fs.writeFileSync(path.join(dir, 'big'), randomBytes(3 << 20, 42))
      return dir
    })
    const runs = await Promise.all([...trees, ...trees].map((t) => runCli(['import', '--store', store, t])))
    for (const r of runs) assert.equal(r.code, 0, r.stderr)
    // The same tree gives the same path whichever process stored it.
    for (let t = 0; t < 4; t++) assert.equal(runs[t]!.stdout.toString(), runs[t + 4]!.stdout.toString())
    // Every path reads back whole, and nothing was left in tmp/.
    for (const [t, r] of runs.slice(0, 4).entries()) {
      const p = r.stdout.toString().trim()
      const own = await runCli(['cat', '--store', store, `${p}/own`])
      assert.equal(own.stdout.toString(), `tree ${t}`)
      const nar = await runCli(['export-nar', '--store', store, p])
      assert.equal(nar.code, 0, nar.stderr)
    }
    assert.deepEqual(fs.readdirSync(path.join(store, 'tmp')), [])
    // Each process staged its first writes beside the store, and removed that folder.
    assert.deepEqual(fs.readdirSync(root).sort(), ['store', 'tree0', 'tree1', 'tree2', 'tree3'])
    assert.equal(snapshot(path.join(store, 'pathinfo')).length, 4)
  })
})
