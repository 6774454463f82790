/**
 * oclif's own messages (an unknown command, `help` of one, a missing
 * required flag, a bad integer) are our one `error:` line with exit 2,
 * JSON under --json; `help COMMAND` and `COMMAND --help` print help.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { assertOneErrorLine, assertOneJsonError, runCli } from '../helpers/cli.js'

const SOME_PATH = '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'

async function usageError(args: string[], re: RegExp): Promise<void> {
  const r = await runCli(args)
  assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
  assert.equal(r.stdout.toString(), '')
  assertOneErrorLine(r.stderr, re)
}

async function showsHelp(args: string[], usage: RegExp): Promise<void> {
  const r = await runCli(args)
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  assert.equal(r.stderr, '')
  assert.match(r.stdout.toString(), usage)
}

describe("oclif's messages", () => {
  test('an unknown command: one line with the nearest command, exit 2', async () => {
    await usageError(['lss', SOME_PATH], /^error: unknown command 'lss' \(did you mean 'ls'\?\); see 'tvix-store --help'$/)
    await usageError(['improt', './x'], /unknown command 'improt' \(did you mean 'import'\?\)/)
    await usageError(['roots', 'lst'], /unknown command 'roots lst' \(did you mean 'roots list'\?\)/)
    await usageError(['frobnicate'], /^error: unknown command 'frobnicate'; see 'tvix-store --help'$/)
  })

  test('help of an unknown command is the same line', async () => {
    await usageError(['help', 'lss'], /^error: unknown command 'lss' \(did you mean 'ls'\?\)/)
  })

  test('under --json, an unknown command is a JSON error line', async () => {
    const r = await runCli(['lss', '--json', SOME_PATH])
    assert.equal(r.code, 2)
    assert.equal(r.stdout.toString(), '')
    assertOneJsonError(r.stderr, 'ERR_USAGE', /unknown command 'lss'/)
  })

  test('a missing required flag, a bad integer, a missing argument, an unknown flag', async () => {
    await usageError(['copy', SOME_PATH], /^error: Missing required flag to$/)
    await usageError(['copy', '--to', 'memory://', '--parallel', 'x', SOME_PATH], /^error: Parsing --parallel Expected an integer but received: x$/)
    await usageError(['daemon', '--max-connections', '0'], /--max-connections Expected an integer greater than or equal to 1/)
    await usageError(['cat'], /Missing 1 required arg/)
    await usageError(['ls', '--frobnicate', SOME_PATH], /Nonexistent flag: --frobnicate$/)
  })

  test('help COMMAND and COMMAND --help print the help, exit 0', async () => {
    await showsHelp(['help', 'ls'], /^USAGE\n {2}\$ tvix-store ls PATH/m)
    await showsHelp(['ls', '--help'], /^USAGE\n {2}\$ tvix-store ls PATH/m)
    await showsHelp(['help', 'roots', 'add'], /^USAGE\n {2}\$ tvix-store roots add NAME PATH/m)
    await showsHelp(['help'], /^COMMANDS\n(.|\n)* {2}import /m)
  })
})
