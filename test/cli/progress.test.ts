import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { importProgress } from '../../src/cli/progress.js'

test('the import progress bar counts "1 file", "2 files"', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-progress-'))
  // Sparse: over the bar's 32 MiB threshold without writing it.
  fs.writeFileSync(path.join(dir, 'big'), '')
  fs.truncateSync(path.join(dir, 'big'), 40 << 20)
  const stderr = process.stderr as NodeJS.WriteStream & { isTTY: boolean }
  const [tty, write, ci] = [stderr.isTTY, stderr.write, process.env.CI]
  let out = ''
  stderr.isTTY = true
  delete process.env.CI
  stderr.write = ((chunk: string | Uint8Array) => ((out += chunk.toString()), true)) as typeof stderr.write
  try {
    // The bar's module loads on the first update; the bar draws once it has.
    const drawn = () => import('cli-progress').then(() => new Promise((r) => setImmediate(r)))
    const bar = importProgress([dir])
    bar.update(20 << 20, 1)
    await drawn()
    bar.stop()
    const one = out
    out = ''
    const again = importProgress([dir])
    again.update(20 << 20, 2)
    await drawn()
    again.stop()
    assert.match(one, /\| 1 file\b/)
    assert.doesNotMatch(one, /1 files/)
    assert.match(out, /\| 2 files\b/)
  } finally {
    Object.assign(stderr, { isTTY: tty, write })
    if (ci !== undefined) process.env.CI = ci
    fs.rmSync(dir, { recursive: true, force: true })
  }
})
