import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { ptyMissing, replayTerminal, runCliOnPty } from '../helpers/terminal.js'
import { randomBytes } from '../helpers/trees.js'

const ROWS = 24
const skip = ptyMissing() ?? nixMissing()
if (skip) console.log(`skipping the progress bar terminal tests: ${skip}`)

/**
 * `import` of a file over the bar's threshold, with stdout and stderr on
 * one pseudo-terminal: the screen the raw output leaves must show the
 * store path Nix gives the file on a line of its own, and nothing of the
 * bar. Replayed twice: on a fresh terminal (cursor at the top) and on a
 * full one (cursor on the last line, so every new line scrolls).
 */
describe('progress bar and output on one terminal', { skip }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bar-pty-'))
  const file = path.join(root, 'big.bin')
  const store = path.join(root, 'store')
  let want: string
  // CI switches bars off: the child gets no CI, whatever this process has.
  const env: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm', NO_COLOR: '1' }
  delete env.CI
  delete env.TVIX_STORE
  delete env.NIX_STORE_DIR

  before(() => {
    fs.writeFileSync(file, randomBytes(40 << 20, 40))
    want = new NixStore(path.join(root, 'nix')).pathOf(file)
  })
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  const importOnPty = async () => {
    const r = await runCliOnPty(['import', '--store', store, file], { env, rows: ROWS, cols: 200 })
    assert.equal(r.code, 0, r.output.toString())
    return r.output
  }

  const assertScreen = (output: Buffer, what: string) => {
    for (const startRow of [0, ROWS - 1]) {
      const screen = replayTerminal(output, ROWS, startRow).filter((l) => l !== '')
      assert.deepEqual(screen, [want], `${what}, cursor starting on line ${startRow}: ${JSON.stringify(output.toString())}`)
    }
  }

  test('the printed store path stays on the screen, and the bar is gone', async () => {
    const output = await importOnPty()
    assert.match(output.toString(), /importing \[/, 'the bar was drawn')
    assertScreen(output, 'first import')
  })

  test('Ctrl-C during an import: the error on a line of its own, the cursor shown and line wrap on again', async () => {
    const r = await runCliOnPty(['import', '--store', path.join(root, 'interrupted'), file], { env, rows: ROWS, cols: 200, sigintAfter: 'importing [' })
    assert.equal(r.code, 130, r.output.toString())
    const raw = r.output.toString()
    for (const startRow of [0, ROWS - 1]) {
      assert.deepEqual(replayTerminal(r.output, ROWS, startRow).filter((l) => l !== ''), ['error: interrupted (SIGINT)'], JSON.stringify(raw))
    }
    assert.ok(raw.lastIndexOf('\x1b[?25h') > raw.lastIndexOf('\x1b[?25l'), 'cursor shown again')
    assert.ok(raw.lastIndexOf('\x1b[?7h') > raw.lastIndexOf('\x1b[?7l'), 'line wrap on again')
  })

  test('importing the same file again leaves nothing of the bar either', async () => {
    const output = await importOnPty()
    assertScreen(output, 'second import')
  })
})
