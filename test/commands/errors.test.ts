import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { before, describe, test } from 'node:test'
import { type CliResult, assertOneJsonError, runCli } from '../helpers/cli.js'
import { directory, entry, nar, regular, str, symlink, toks } from '../helpers/nar.js'
import { importNarInProcess } from '../helpers/ops.js'
import { snapshot } from '../helpers/snapshot.js'
import { StoreError } from '../../src/errors.js'
import { randomBytes } from '../helpers/trees.js'

/** One `error:` line on stderr, nothing on stdout, a non-zero exit. */
function assertCleanFailure(r: CliResult, re: RegExp, code?: number) {
  assert.notEqual(r.code, 0)
  if (code !== undefined) assert.equal(r.code, code)
  assert.equal(r.stdout.length, 0, `stdout: ${r.stdout}`)
  const lines = r.stderr.split('\n').filter(Boolean)
  assert.equal(lines.length, 1, `stderr: ${r.stderr}`)
  assert.match(lines[0]!, /^error: /)
  assert.match(lines[0]!, re)
}

describe('bad input leaves the store as it was', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-err-'))
  const store = path.join(root, 'store')
  let before_: string[]

  before(async () => {
    // A store with something in it, so "unchanged" is not trivially true.
    const r = await runCli(['import', '--store', store, '--nar', '-', '--name', 'seed'], { input: nar(regular('seed')) })
    assert.equal(r.code, 0, r.stderr)
    before_ = snapshot(store)
  })

  // A big file first, so blobs are already written when the error comes.
  const big = randomBytes(3 << 20, 3).toString('latin1')
  const badNars: Array<[string, Buffer, RegExp]> = [
    ['truncated', nar(directory(entry('a', regular(big)), entry('b', regular('y')))).subarray(0, (3 << 20) + 200), /truncated/],
    ['unsorted entries after a big file', nar(directory(entry('b', regular(big)), entry('a', regular('y')))), /out of order/],
    ['duplicate entries', nar(directory(entry('a', regular(big)), entry('a', regular('y')))), /duplicate/],
    ['trailing bytes', Buffer.concat([nar(regular(big)), Buffer.from('junk')]), /trailing/],
    ['bad padding', nar(toks('(', 'type', 'regular', 'contents', str('x', { pad: [1, 0, 0, 0, 0, 0, 0] }), ')')), /padding/],
    ['name with slash', nar(directory(entry('a/b', regular('x')))), /"\/"/],
    ['name ..', nar(directory(entry('..', regular('x')))), /"\.\."/],
    ['NUL in symlink target', nar(symlink('a\0')), /NUL/],
    ['not a NAR at all', Buffer.from('hello, world, this is not a NAR file'), /invalid NAR/],
  ]
  // Two through the CLI (the error line and exit code of import --nar from stdin); every one in-process (the op the command runs).
  const CLI_SAMPLE = new Set(['truncated', 'not a NAR at all'])
  for (const [name, bytes, re] of badNars) {
    test(`import --nar: ${name}`, async () => {
      await assert.rejects(importNarInProcess(store, (async function* () { yield bytes })()), (e: Error) => {
        assert.ok(e instanceof StoreError && e.exitCode === 1, `want a StoreError with exit code 1, got ${e.name}: ${e.message}`)
        assert.doesNotMatch(e.message, /\n/, 'the message is one line')
        assert.match(`error: ${e.message}`, re)
        return true
      })
      assert.deepEqual(snapshot(store), before_)
      if (!CLI_SAMPLE.has(name)) return
      const r = await runCli(['import', '--store', store, '--nar', '-', '--name', 'bad'], { input: bytes })
      assertCleanFailure(r, re, 1)
      assert.deepEqual(snapshot(store), before_)
    })
  }

  test('import of a path with a FIFO inside', async () => {
    const tree = path.join(root, 'withfifo')
    fs.mkdirSync(tree)
    fs.writeFileSync(path.join(tree, 'a-big-file'), randomBytes(2 << 20, 9))
    const { execFileSync } = await import('node:child_process')
    execFileSync('mkfifo', [path.join(tree, 'b-fifo')])
    const r = await runCli(['import', '--store', store, tree])
    assertCleanFailure(r, /unsupported type/, 1)
    assert.deepEqual(snapshot(store), before_)
  })

  test('import with an invalid name', async () => {
    const r = await runCli(['import', '--store', store, '--name', 'has space', path.join(root, 'withfifo')])
    assertCleanFailure(r, /invalid store path name/)
    assert.deepEqual(snapshot(store), before_)
  })

  test('--json errors are a JSON object on stderr', async () => {
    const r = await runCli(['import', '--json', '--store', store, '--nar', '-', '--name', 'bad'], { input: Buffer.from('nope') })
    assert.notEqual(r.code, 0)
    assert.equal(r.stdout.length, 0)
    const err = JSON.parse(r.stderr)
    assert.equal(err.error.code, 'ERR_INVALID')
    assert.match(err.error.message, /invalid NAR/)
  })
})

describe('usage errors exit 2 with one line', () => {
  test('unknown store URL scheme', async () => {
    assertCleanFailure(await runCli(['ls', '--store', 'gopher://host', '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw']), /unknown store URL scheme/, 2)
  })
  test('unknown flag', async () => {
    assertCleanFailure(await runCli(['ls', '--frobnicate', '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw']), /frobnicate/, 2)
  })
  test('missing argument', async () => {
    assertCleanFailure(await runCli(['cat', '--store', 'memory://']), /path/, 2)
  })
  test('--nar and paths together', async () => {
    assertCleanFailure(await runCli(['import', '--store', 'memory://', '--nar', '-', 'x']), /either --nar or paths/, 2)
  })
  test('ls --json -d, as Nix refuses it (a JSON error line, as every error under --json)', async () => {
    const r = await runCli(['ls', '--store', 'memory://', '--json', '-d', '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'])
    assert.equal(r.code, 2)
    assert.equal(r.stdout.length, 0)
    assertOneJsonError(r.stderr, 'ERR_USAGE', /useless/)
  })
})

describe('store selection', () => {
  test('TVIX_STORE and NIX_STORE_DIR are honoured', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-env-'))
    const file = path.join(root, 'hw')
    fs.writeFileSync(file, 'Hello World!')
    const env = { TVIX_STORE: path.join(root, 'store') }
    const r = await runCli(['import', file], { env })
    assert.equal(r.stdout.toString(), '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw\n')
    assert.ok(fs.existsSync(path.join(root, 'store/tvix-store.json')))
    const other = await runCli(['import', file], { env: { ...env, NIX_STORE_DIR: '/other/store' } })
    assert.match(other.stdout.toString(), /^\/other\/store\/[0-9a-z]{32}-hw\n$/)
    assert.notEqual(other.stdout.toString().slice(-36), r.stdout.toString().slice(-36))
  })

  test('the default store is $XDG_DATA_HOME/tvix-store', async () => {
    const xdg = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-xdg-'))
    const file = path.join(xdg, 'hw')
    fs.writeFileSync(file, 'Hello World!')
    const r = await runCli(['import', file], { env: { XDG_DATA_HOME: xdg } })
    assert.equal(r.code, 0, r.stderr)
    assert.ok(fs.existsSync(path.join(xdg, 'tvix-store/tvix-store.json')))
    const c = await runCli(['cat', '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'], { env: { XDG_DATA_HOME: xdg } })
    assert.equal(c.stdout.toString(), 'Hello World!')
  })
})
