import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { describe, test } from 'node:test'
import { BIN, runCli } from '../helpers/cli.js'

const ESC = '\u001b['
const PATH = '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'
const noScript = spawnSync('script', ['--version']).status === 0 ? undefined : 'util-linux script(1) is not installed, no pseudo-terminal to test with'
if (noScript) console.log(`skipping the terminal colour tests: ${noScript}`)

/** Runs the CLI on a pseudo-terminal (util-linux script), returning everything it printed. */
function onTerminal(args: string[], env: Record<string, string | undefined>, timeout?: number): string {
  const cmd = [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' ')
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, ...env }, encoding: 'utf8', timeout })
  if (r.error) throw r.error
  return r.stdout
}

describe('colour', () => {
  test('no colour codes when stderr is not a terminal', async () => {
    const r = await runCli(['cat', '--store', 'memory://', PATH], { env: { NO_COLOR: '', FORCE_COLOR: '' } })
    assert.equal(r.code, 1)
    assert.ok(!r.stderr.includes(ESC), JSON.stringify(r.stderr))
  })

  test('colour on a terminal, none with NO_COLOR', { skip: noScript }, () => {
    const env = { NO_COLOR: undefined, TERM: 'xterm', CI: undefined }
    const coloured = onTerminal(['cat', '--store', 'memory://', PATH], env)
    assert.match(coloured, /error:/)
    assert.ok(coloured.includes(ESC), JSON.stringify(coloured))
    const plain = onTerminal(['cat', '--store', 'memory://', PATH], { ...env, NO_COLOR: '1' })
    assert.match(plain, /error:/)
    assert.ok(!plain.includes(ESC), JSON.stringify(plain))
  })
})

describe('progress bar', () => {
  test('a large import on a terminal shows one; piped output stays one path per line', { skip: noScript }, async () => {
    const fs = await import('node:fs')
    const os = await import('node:os')
    const path = await import('node:path')
    const { randomBytes } = await import('../helpers/trees.js')
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bar-'))
    const big = path.join(root, 'big')
    fs.mkdirSync(big)
    for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(big, `f${i}`), randomBytes(16 << 20, i))
    const shown = onTerminal(['import', '--store', path.join(root, 's1'), big], { CI: undefined, TERM: 'xterm', NO_COLOR: '1' })
    assert.match(shown, /importing \[/)
    assert.match(shown, /\/nix\/store\/[0-9a-z]{32}-big/)
    const piped = await runCli(['import', '--store', path.join(root, 's2'), big], { env: { CI: '' } })
    assert.match(piped.stdout.toString(), /^\/nix\/store\/[0-9a-z]{32}-big\n$/)
    assert.equal(piped.stderr, '')
  })

  test('work that ends before the bar has loaded does not hang the command (copy, verify, gc)', { skip: noScript }, async () => {
    const fs = await import('node:fs')
    const os = await import('node:os')
    const path = await import('node:path')
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bar-'))
    const tree = path.join(root, 't')
    fs.mkdirSync(tree)
    for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(tree, `f${i}`), `${i}`)
    const [from, to] = [path.join(root, 'from'), path.join(root, 'to')]
    const p = (await runCli(['import', '--store', from, tree])).stdout.toString().trim()
    const env = { CI: undefined, TERM: 'xterm', NO_COLOR: '1' }
    // Each must exit on its own (a bar started after its work ended kept the process alive).
    assert.match(onTerminal(['copy', '--from', from, '--to', to, p], env, 30_000), new RegExp(p))
    assert.match(onTerminal(['verify', '--store', to], env, 30_000), /no problems/)
    assert.match(onTerminal(['gc', '--store', to, '--prune', '--grace', '0'], env, 30_000), /1 store path deleted/)
  })
})
