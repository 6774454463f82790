/**
 * bin/run.js runs the hot commands (src/hot-commands.ts) without oclif's
 * runtime. Whatever the arguments, good or bad, that path must answer as
 * oclif's does: the same stdout, stderr and exit code as main() (oclif's
 * run) for the same argv and environment.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { BIN, REPO, cliEnv, runCli } from '../helpers/cli.js'
import { type ProcessResult, runProcess } from '../helpers/spawn.js'
import { randomBytes, TREES } from '../helpers/trees.js'

const MAIN = path.join(REPO, 'dist/cli/main.js')
const FAST = path.join(REPO, 'dist/fast-path.cjs')
const LOADER = path.join(REPO, 'bin/load-fast-path.cjs')
const MISSING = '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-missing'

/** oclif's path: what bin/run.js did before the fast path existed. */
const viaOclif = (argv: string[], env: Record<string, string>): Promise<ProcessResult> =>
  runProcess(process.execPath, ['--input-type=module', '-e', `(await import(${JSON.stringify(MAIN)})).main(JSON.parse(process.argv[1]), ${JSON.stringify(REPO)})`, JSON.stringify(argv)], { env, cwd: REPO })

/** The bundle bin/run.js loads for this first word, else the one of all hot commands. */
const bundleFor = (word = ''): string => {
  const own = path.join(REPO, `dist/fast-path.${word.replace(/^-+/, '')}.cjs`)
  return /^[a-z-]+$/.test(word) && fs.existsSync(own) ? own : FAST
}

/** The fast path alone, loaded and called as bin/run.js does; exit 99 and a note if it declined. */
const viaFast = (argv: string[], env: Record<string, string>): Promise<ProcessResult> =>
  runProcess(
    process.execPath,
    [
      '-e',
      `require(${JSON.stringify(LOADER)}).compileFastPath(${JSON.stringify(bundleFor(argv[0]))}).exports.run(JSON.parse(process.argv[1]), ${JSON.stringify(REPO)}).then((taken) => { if (!taken) { process.stderr.write('declined'); process.exitCode = 99 } })`,
      JSON.stringify(argv),
    ],
    { env, cwd: REPO },
  )

const show = (r: ProcessResult): string => `exit ${r.code}\nstdout: ${JSON.stringify(r.stdout.toString())}\nstderr: ${JSON.stringify(r.stderr)}`

async function sameAnswer(argv: string[], extraEnv: Record<string, string> = {}, fast = true, normalise = (r: ProcessResult) => r): Promise<void> {
  const env = cliEnv(extraEnv)
  delete env.DEBUG
  const [ours, theirs] = await Promise.all([fast ? viaFast(argv, env) : runProcess(process.execPath, [BIN, ...argv], { env, cwd: REPO }), viaOclif(argv, env)])
  assert.equal(show(normalise(ours)), show(normalise(theirs)), `argv: ${JSON.stringify(argv)}`)
}

/** A few at a time: each is two processes. */
async function all(cases: Array<() => Promise<void>>): Promise<void> {
  for (let i = 0; i < cases.length; i += 4) await Promise.all(cases.slice(i, i + 4).map((c) => c()))
}

describe('the fast path answers as oclif does', () => {
  let dir: string
  let store: string
  let p: string
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fast-path-'))
    store = path.join(dir, 'store')
    TREES.mixed!(path.join(dir, 'tree'))
    const r = await runCli(['import', '--store', store, path.join(dir, 'tree')])
    assert.equal(r.code, 0, r.stderr)
    p = r.stdout.toString().trim()
  })
  after(() => fs.rmSync(dir, { recursive: true, force: true }))

  test('--version', () => sameAnswer(['--version']))

  test('ls: listings, bad flags and arguments, --json errors', async () => {
    const s = ['--store', store]
    await all(
      [
        ['ls', ...s, p],
        ['ls', ...s, '-lR', p],
        ['ls', ...s, '-l', '--recursive', `${p}/sub`],
        ['ls', ...s, '-d', p],
        ['ls', ...s, '--json', '-R', p],
        ['ls', `--store=${store}`, '--json', p],
        ['ls', ...s, '--json', '-d', p],
        ['ls', ...s, '--frobnicate', p],
        ['ls', ...s, '--json', '--frobnicate', p],
        ['ls', ...s, '-x', p],
        ['ls', ...s],
        ['ls', ...s, '--json'],
        ['ls', ...s, p, 'extra'],
        ['ls', ...s, `${p}/nope`],
        ['ls', ...s, '--json', `${p}/nope`],
        ['ls', ...s, '--', '--json'],
        ['ls', ...s, '--', '--help'],
        ['ls', ...s, 'not-a-store-path'],
        ['ls', '--store'],
        ['ls', '--store', path.join(dir, 'no-store'), p],
        ['ls', '--store', path.join(dir, 'no-store'), '--json', p],
        ['ls', '--store', 'frob://x', p],
      ].map((argv) => () => sameAnswer(argv)),
    )
  })

  test('cat, narinfo, path-info', async () => {
    const s = ['--store', store]
    await all(
      [
        ['cat', ...s, `${p}/sub/a.txt`],
        ['cat', ...s, `${p}/run.sh`],
        ['cat', ...s, `${p}/link`],
        ['cat', ...s, p],
        ['cat', ...s, '--json', `${p}/sub/a.txt`],
        ['cat', ...s],
        ['cat', ...s, `${p}/sub/a.txt/`],
        ['narinfo', ...s, p],
        ['narinfo', ...s, '--json', p],
        ['narinfo', ...s, MISSING],
        ['narinfo', ...s, '--json', MISSING],
        ['narinfo', ...s, '--json', 'garbage'],
        ['path-info', ...s, p],
        ['path-info', ...s, '-rsSh', p, `${p}/sub`],
        ['path-info', ...s, '--json', '-r', p],
        ['path-info', ...s, '--all', '--sigs'],
        ['path-info', ...s, '--json', MISSING],
        ['path-info', ...s, '--json', '-r', MISSING],
        ['path-info', ...s, MISSING],
        ['path-info', ...s, '-s', '--closure-size', '--human-readable'],
        ['path-info', ...s, '--sizes', p],
      ].map((argv) => () => sameAnswer(argv)),
    )
  })

  test('export-nar and import', async () => {
    const s = ['--store', store]
    const tree = path.join(dir, 'tree')
    await all(
      [
        ['export-nar', ...s, p],
        ['export-nar', ...s, `${p}/sub/a.txt`],
        ['export-nar', ...s, MISSING],
        ['export-nar', ...s, '-o'],
        ['export-nar', ...s, '-o', path.join(dir, 'no-such-dir', 'x.nar'), p],
        ['export-nar', ...s],
        ['import', ...s, tree],
        ['import', ...s, '--json', path.join(tree, 'sub'), path.join(tree, 'run.sh')],
        ['import', ...s, '--name', 'renamed', path.join(tree, 'sub', 'a.txt')],
        ['import', ...s, '--name', 'x', tree, path.join(tree, 'sub')],
        ['import', ...s, path.join(dir, 'missing-file')],
        ['import', ...s, '--json', path.join(dir, 'missing-file')],
        ['import', ...s],
        ['import', ...s, '--nar', '-', tree],
        ['import', ...s, '--name', 'bad/name', tree],
      ].map((argv) => () => sameAnswer(argv)),
    )
  })

  test('verify, query, gc, copy, delete, sign', async () => {
    const s = ['--store', store]
    // Their summaries say how long they took: the same answer up to that.
    const timeless = (text: string) => text.replace(/ in \d+(\.\d+)? s\b/g, ' in T s').replace(/("\w*[sS]econds"):[\d.]+/g, '$1:T')
    const took = (r: ProcessResult): ProcessResult => ({ ...r, stdout: Buffer.from(timeless(r.stdout.toString())), stderr: timeless(r.stderr) })
    await all(
      [
        ['verify', ...s],
        ['verify', ...s, '--json', p],
        ['verify', ...s, MISSING],
        ['verify', ...s, '--repair', '--frobnicate'],
        ['query', ...s, '--requisites', p],
        ['query', ...s, '--json', '--references', p],
        ['query', ...s, '--tree', p],
        ['query', ...s, MISSING],
        ['query', ...s, '--requisites', 'garbage'],
        // Nothing to collect (young, not --prune): both runs find the store as it is.
        ['gc', ...s, '--grace', '1h'],
        ['gc', ...s, '--json', '--grace', '1h'],
        ['gc', ...s, '--grace', 'soon'],
        ['gc', '--store', path.join(dir, 'no-store')],
        ['copy', ...s, p],
        ['copy', '--from', store, '--to', 'frob://x', p],
        ['copy', '--from', store, '--to', path.join(dir, 'copy-target'), MISSING],
        ['delete', ...s, MISSING],
        ['delete', ...s, '--json'],
        ['sign', ...s, p],
        ['sign', ...s, '--secret-key-file', path.join(dir, 'no-key'), p],
      ].map((argv) => () => sameAnswer(argv, {}, true, took)),
    )
  })

  test('daemon: refusals before it serves (a run that serves does not end, so it is not compared)', async () => {
    const s = ['--store', store]
    await all(
      [
        ['daemon', ...s, '--listen', 'not-an-address'],
        ['daemon', ...s, '--frobnicate'],
        ['daemon', ...s, 'extra'],
        ['daemon', '--store', 'frob://x'],
        ['daemon', ...s, '--idle-timeout', 'soon'],
        ['daemon', ...s, '--json', '--listen', 'not-an-address'],
        ['daemon', ...s, '--secret-key-file', path.join(dir, 'no-key')],
      ].map((argv) => () => sameAnswer(argv)),
    )
  })

  test('settings from the environment', async () => {
    await all([
      () => sameAnswer(['ls', p], { TVIX_STORE: store }),
      () => sameAnswer(['narinfo', p], { TVIX_STORE: store, TVIX_STORE_CONTENT_TYPE: 'json' }),
      () => sameAnswer(['path-info', '--store', store, p], { NIX_STORE_DIR: '/other/store' }),
      () => sameAnswer(['cat', '--store', store, `${p}/sub/a.txt`], { NO_COLOR: '', TERM: 'dumb' }),
    ])
  })

  test('what stays oclif\'s answers the same through bin/run.js: help, other commands, DEBUG', async () => {
    await all(
      [
        [['ls', '--help']],
        [['daemon', '--help']],
        [['cat', '--store', store, '--help', p]],
        [['help', 'path-info']],
        [['lss', p]],
        [['import', '--frobnicate']],
        [['ls', '--store', store, '--frobnicate', p], { DEBUG: '1' }],
        [['ls', '--store', store, p], { TVIX_STORE_DEBUG: '1' }],
      ].map(([argv, env]) => () => sameAnswer(argv as string[], env as Record<string, string> | undefined, false)),
    )
  })
})

describe('what a short read loads', () => {
  let dir: string
  let store: string
  let p: string
  /** A preload that says, at exit, whether the native BLAKE3 binding was loaded. */
  let preload: string
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fast-path-loads-'))
    store = path.join(dir, 'store')
    const tree = path.join(dir, 'tree')
    // Past the first plain files, small blobs go into a bundle, whose index (~1.3 KiB here) a read checks.
    fs.mkdirSync(path.join(tree, 'sub'), { recursive: true })
    fs.writeFileSync(path.join(tree, 'sub', 'a.txt'), 'abc')
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(tree, `f${i}`), randomBytes(3000, i))
    fs.writeFileSync(path.join(tree, 'large'), randomBytes(5000, 99))
    const r = await runCli(['import', '--store', store, tree])
    assert.equal(r.code, 0, r.stderr)
    p = r.stdout.toString().trim()
    preload = path.join(dir, 'report-native.cjs')
    fs.writeFileSync(preload, "process.on('exit', () => { if (Object.keys(require.cache).some((k) => k.includes('blake-hash'))) process.stderr.write('native BLAKE3 loaded\\n') })\n")
  })
  after(() => fs.rmSync(dir, { recursive: true, force: true }))

  const cat = (file: string) => runProcess(process.execPath, ['-r', preload, BIN, 'cat', '--store', store, `${p}/${file}`], { env: cliEnv(), cwd: REPO })

  test('cat of a small file checks it, its Directories and its bundle in JavaScript; a file over 4 KiB loads the native binding', async () => {
    const small = await cat('sub/a.txt')
    assert.equal(small.code, 0, small.stderr)
    assert.equal(small.stdout.toString(), 'abc')
    assert.equal(small.stderr, '')
    const large = await cat('large')
    assert.equal(large.code, 0, large.stderr)
    assert.ok(large.stdout.equals(randomBytes(5000, 99)))
    assert.equal(large.stderr, 'native BLAKE3 loaded\n')
  })
})
