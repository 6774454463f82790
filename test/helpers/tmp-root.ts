/**
 * Loaded before every test process (package.json's test script): points
 * TMPDIR at a fresh folder of its own and removes it when the process
 * exits, so whatever a test or the CLI processes it spawns leave in the
 * temp dir goes too, even from tests that fail midway. The test runner's
 * own process loads it first, so its folder holds the test files' folders.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-test-'))
process.env.TMPDIR = root
// What the CLI caches per user (import fingerprints) stays with the test, not in the home folder.
process.env.XDG_CACHE_HOME = path.join(root, 'cache')
process.on('exit', () => {
  try {
    fs.rmSync(root, { recursive: true, force: true })
  } catch {
    // A tmpfs a failed test left mounted: the rest is gone, the mount point stays.
  }
})
