import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { DIRECT_BLOCK, SequentialWriter } from '../../src/backends/local/direct-write.js'
import { randomBytes } from '../helpers/trees.js'

/** Pieces of odd sizes, across block boundaries, ending in a partial block. */
const pieces = () => [randomBytes(100, 1), randomBytes(DIRECT_BLOCK - 7, 2), randomBytes(3 * DIRECT_BLOCK + 12345, 3), randomBytes(1, 4), randomBytes(0, 5), randomBytes(70_000, 6)]

// The test's temp dir (a disk filesystem: O_DIRECT), and tmpfs where there is one (no O_DIRECT: ordinary writes).
const dirs = [os.tmpdir(), ...(fs.existsSync('/dev/shm') ? ['/dev/shm'] : [])]

for (const dir of dirs) {
  test(`in ${dir}: the file holds the pieces back to back, read-only; pieces may be reused once write() returns`, async () => {
    const file = path.join(fs.mkdtempSync(path.join(dir, 'tvix-direct-write-')), 'out')
    try {
      const parts = pieces()
      const w = await SequentialWriter.create(file)
      const scratch = Buffer.alloc(Math.max(...parts.map((p) => p.length)))
      for (const p of parts) {
        p.copy(scratch)
        await w.write(scratch.subarray(0, p.length))
        scratch.fill(0xaa)
      }
      await w.finish()
      assert.ok(fs.readFileSync(file).equals(Buffer.concat(parts)))
      assert.equal(fs.statSync(file).mode & 0o777, 0o444)
      await assert.rejects(SequentialWriter.create(file), { code: 'EEXIST' })
    } finally {
      fs.rmSync(path.dirname(file), { recursive: true, force: true })
    }
  })
}
