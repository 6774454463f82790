import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { type CliResult, runCli } from '../helpers/cli.js'

function assertOneError(r: CliResult, re: RegExp) {
  assert.notEqual(r.code, 0, r.stderr)
  assert.equal(r.stdout.length, 0)
  const lines = r.stderr.split('\n').filter(Boolean)
  assert.equal(lines.length, 1, `stderr: ${r.stderr}`)
  assert.match(lines[0]!, re)
}

/** What cannot be read is named plainly, not as a raw errno message; nothing is created. */
describe('import --nar of what is not a readable file', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-missing-'))
  const store = path.join(root, 'store')
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  test('a missing file, under a missing folder', async () => {
    const nar = path.join(root, 'no', 'such', 'x.nar')
    assertOneError(await runCli(['import', '--store', store, '--nar', nar]), new RegExp(`^error: cannot read ${nar}: no such file or directory$`))
    assert.equal(fs.existsSync(store), false)
  })

  test('a directory', async () => {
    const dir = path.join(root, 'adir')
    fs.mkdirSync(dir)
    assertOneError(await runCli(['import', '--store', store, '--nar', dir, '--name', 'x']), new RegExp(`^error: cannot read ${dir}: it is a directory, not a NAR$`))
    assert.equal(fs.existsSync(store), false)
  })
})
