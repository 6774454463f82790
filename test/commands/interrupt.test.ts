import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { BIN } from '../helpers/cli.js'
import { spawnOwned } from '../helpers/spawn.js'
import { randomBytes } from '../helpers/trees.js'
import { tempFiles } from '../helpers/snapshot.js'

describe('an interrupted import', () => {
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    test(`${sig}: exits ${code}, removes its temp files, publishes nothing`, async () => {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-intr-'))
      const tree = path.join(root, 'tree')
      fs.mkdirSync(tree)
      // Enough work that the signal lands mid-import: many files, then big ones.
      for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(tree, `a${i}`), randomBytes(2000, i))
      for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(tree, `z${i}`), randomBytes(24 << 20, 1000 + i))
      const store = path.join(root, 'store')
      const child = spawnOwned(process.execPath, [BIN, 'import', '--store', store, tree], { stdio: ['ignore', 'pipe', 'pipe'] })
      let stderr = ''
      child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
      // Signal once the store has staged a good part of the small files (their temp files, the bundle's among them, hold over 1 MB).
      const staged = () => tempFiles(store).reduce((sum, f) => sum + (fs.statSync(f, { throwIfNoEntry: false })?.size ?? 0), 0)
      await new Promise<void>((resolve) => {
        const poll = setInterval(() => {
          if (staged() > 1 << 20) {
            clearInterval(poll)
            resolve()
          }
        }, 5)
      })
      child.kill(sig)
      const exit = await new Promise<number | null>((resolve) => child.once('exit', resolve))
      assert.equal(exit, code, stderr)
      assert.match(stderr, new RegExp(`^error: interrupted \\(${sig}\\)\\n$`))
      assert.deepEqual(tempFiles(store), [])
      // The store did not exist: an interrupted first import leaves none.
      assert.ok(!fs.existsSync(store))
    })
  }
})
