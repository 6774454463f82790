/**
 * End-to-end interop: our built CLI (bin/run.js) against real Nix 2.8, on
 * every seeded tree in TREES. Each tree is built once, added once to a
 * private Nix store and imported once into our store (in `before`); the
 * tests then compare store paths, NAR bytes, narinfo text, listings and
 * file contents with what Nix produces for the same input.
 *
 * Run: npm run build && node --import tsx --test test/e2e/nix-interop.test.ts
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type CliExit, type CliResult, runCli, spawnCli } from '../helpers/cli.js'
import { NixStore, nixMissing, runNix } from '../helpers/nix.js'
import { blockedFor } from '../helpers/spawn.js'
import { exportNarOutput } from '../helpers/ops.js'
import { importNar } from '../../src/ops/import-nar.js'
import { narInfoJson } from '../../src/store/path-info-json.js'
import { openStore } from '../../src/backends/open-store.js'
import { StoreError } from '../../src/errors.js'
import { catFile } from '../../src/ops/cat.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { listText } from '../../src/ops/ls.js'
import { narInfo } from '../../src/ops/narinfo.js'
import { narInfoFields, renderNarInfo } from '../../src/store/narinfo.js'
import type { Store } from '../../src/store/store.js'
import { assertSameBytes } from '../helpers/same-bytes.js'
import { TREES, makeTree, walk, type Walked } from '../helpers/trees.js'

const SKIP = nixMissing()
if (SKIP) console.log(SKIP)

const KINDS = Object.keys(TREES)

/**
 * How many child processes a test runs at once, and how many trees are
 * tested at once (2 cores; CLI start-up is mostly CPU, NAR import mostly
 * fsync, so some overlap pays).
 */
const PARALLEL = 2
const TREES_AT_ONCE = 2

/**
 * Trees whose export-nar (stdout and -o FILE), import --nar (stdin, FILE,
 * name from FILE), narinfo and cat of a non-file run through the CLI: a
 * directory, a file and a symlink at the root. The other trees run the
 * same ops and renderings in-process against the same Nix output (what the
 * CLI adds, flags and output plumbing, does not depend on the tree).
 */
const CLI_KINDS = new Set(['mixed', 'single-file', 'top-symlink'])

/** What `narinfo [--json] --store URL PATH` prints, in-process (the command's op and rendering). */
async function narinfoInProcess(url: string, storePath: string): Promise<{ text: string; json: string }> {
  const opened = await openStore({ url, mustExist: true })
  try {
    const info = await narInfo(opened, storePath)
    return { text: renderNarInfo(narInfoFields(info, opened.storeDir)), json: JSON.stringify(narInfoJson(info, opened.storeDir)) + '\n' }
  } finally {
    await opened.close()
  }
}

/** The error line `cat --store URL TARGET` prints, in-process. */
async function catErrorInProcess(url: string, target: string): Promise<string> {
  const opened = await openStore({ url, mustExist: true })
  try {
    for await (const chunk of await catFile(opened, target)) assert.equal(chunk.length, 0, `cat ${target}: output before the error`)
  } catch (e) {
    assert.ok(e instanceof StoreError, String(e))
    assert.doesNotMatch(e.message, /\n/)
    return `error: ${e.message}\n`
  } finally {
    await opened.close()
  }
  assert.fail(`cat ${target} succeeded`)
}

/** The flag sets `ls` is run with through the CLI, on the root of `mixed` (every tree, sub-path and flag set: test/ops/ls-cat.test.ts). */
const LS_FLAGS: string[][] = [[], ['-l'], ['-R'], ['-lR'], ['--json'], ['--json', '-R'], ['-d']]

interface Prepared {
  kind: string
  input: string
  /** Raw stdout of `nix-store --add`. */
  nixAddOut: string
  nixPath: string
  /** `nix-store --dump` of the input. */
  dump: Buffer
  /** The dump written to `<nars>/<kind>.nar`. */
  narFile: string
  /** The .narinfo `nix copy --to file://…?compression=none` wrote. */
  nixNarinfo: string
  /** Our `import` of the input into the main store. */
  ourImport: CliResult
  /** Entries of the input ('' = the root itself), in sorted order. */
  walk: Walked
}

let root = ''
let store = '' // our main store; written by before() (and re-imports in the import tests)
let nix: NixStore
let cache = '' // the binary cache `nix copy` wrote every path to
const prepared = new Map<string, Prepared>()

function P(kind: string): Prepared {
  const p = prepared.get(kind)
  assert.ok(p, `tree ${kind} was not prepared (see the before hook)`)
  return p
}

/** `storePath` or `storePath/rel`. */
function sp(storePath: string, rel: string): string {
  return rel ? `${storePath}/${rel}` : storePath
}

type SubtestOptions = { todo?: string }
interface HasSubtests {
  test: (name: string, options: SubtestOptions, fn: () => Promise<void>) => Promise<void>
}

/** Runs the cases as concurrent subtests of `t` (concurrency is the parent test's option). */
async function subtests<T>(t: HasSubtests, cases: T[], name: (c: T) => string, fn: (c: T) => Promise<void>, options: (c: T) => SubtestOptions = () => ({})): Promise<void> {
  await Promise.all(cases.map((c) => t.test(name(c), options(c), () => fn(c))))
}

/** The lines of a narinfo as a map key → values (a key may repeat, e.g. Sig). */
function narinfoFields(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const i = line.indexOf(': ')
    assert.ok(i > 0, `narinfo line without ": ": ${JSON.stringify(line)}`)
    const k = line.slice(0, i)
    m.set(k, [...(m.get(k) ?? []), line.slice(i + 2)])
  }
  return m
}

/** The JSON a `nix` command prints. */
async function nixJson(args: string[]): Promise<Array<Record<string, unknown>>> {
  const r = await runNix('nix', args)
  assert.equal(r.code, 0, r.stderr)
  return JSON.parse(r.stdout.toString())
}

/** Exit code non-zero, nothing on stdout, exactly one `error: ` line on stderr. */
function assertOneError(r: Pick<CliResult, 'stdout' | 'stderr'> & { code: number | null }, what: string): void {
  assert.notEqual(r.code, 0, `${what}: exit code should be non-zero (stdout: ${JSON.stringify(r.stdout.toString())})`)
  assert.equal(r.stdout.length, 0, `${what}: stdout should be empty, got ${JSON.stringify(r.stdout.toString())}`)
  assert.match(r.stderr, /^error: [^\n]*\n$/, `${what}: want exactly one "error: " line on stderr`)
}

describe('nix interop', { concurrency: TREES_AT_ONCE }, () => {
  before(async () => {
    if (SKIP) return
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-nix-interop-'))
    store = path.join(root, 'store')
    nix = new NixStore(path.join(root, 'nix'))
    const inputs = path.join(root, 'in')
    const nars = path.join(root, 'nars')
    cache = path.join(root, 'cache')
    fs.mkdirSync(inputs)
    fs.mkdirSync(nars)
    for (const kind of KINDS) {
      const input = makeTree(inputs, kind)
      const nixAddOut = nix.run('nix-store', ['--store', nix.url, '--add', input]).toString()
      const nixPath = nixAddOut.trim()
      const dump = NixStore.dump(input)
      const narFile = path.join(nars, `${kind}.nar`)
      fs.writeFileSync(narFile, dump)
      prepared.set(kind, { kind, input, nixAddOut, nixPath, dump, narFile, nixNarinfo: '', ourImport: undefined as unknown as CliResult, walk: walk(input) })
    }
    // One `nix copy` for all paths (as NixStore.narinfo does per path, but quiet).
    const paths = KINDS.map((k) => P(k).nixPath)
    const copy = await runNix('nix', ['copy', '--store', nix.url, '--to', `file://${cache}?compression=none`, ...paths])
    assert.equal(copy.code, 0, `nix copy failed: ${copy.stderr}`)
    for (const kind of KINDS) P(kind).nixNarinfo = fs.readFileSync(path.join(cache, `${path.basename(P(kind).nixPath).slice(0, 32)}.narinfo`), 'utf8')
    // Imports into one store run one at a time (each opens the store), other work is already done.
    for (const kind of KINDS) P(kind).ourImport = await runCli(['import', '--store', store, P(kind).input])
  })

  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true })
  })

  for (const kind of KINDS) {
    describe(kind, () => {
      test('import prints the same store path as nix-store --add', { skip: SKIP }, async () => {
        const p = P(kind)
        assert.equal(p.ourImport.stderr, '')
        assert.equal(p.ourImport.code, 0)
        assert.equal(p.ourImport.stdout.toString(), p.nixAddOut)
        assert.match(p.nixAddOut, new RegExp(`^/nix/store/[0-9a-z]{32}-${kind}\\n$`))
        // --json: one line, what `nix path-info --json` says of the path Nix added (but its registration time).
        const j = await runCli(['import', '--json', '--store', store, p.input])
        assert.equal(j.code, 0, j.stderr)
        assert.match(j.stdout.toString(), /^[^\n]+\n$/)
        const theirs = await nixJson(['path-info', '--json', '--store', nix.url, p.nixPath])
        for (const e of theirs) delete e.registrationTime
        assert.deepEqual(JSON.parse(j.stdout.toString()), theirs)
      })

      test('export-nar is byte-identical to nix-store --dump (stdout and -o FILE)', { skip: SKIP }, async () => {
        const p = P(kind)
        if (!CLI_KINDS.has(kind)) return assertSameBytes(await exportNarOutput(store, p.nixPath), p.dump, 'export-nar (in-process) vs nix-store --dump')
        const outDir = path.join(root, 'export', kind)
        fs.mkdirSync(outDir, { recursive: true })
        const outFile = path.join(outDir, `${kind}.nar`)
        const [toStdout, toFile] = await Promise.all([
          runCli(['export-nar', '--store', store, p.nixPath]),
          runCli(['export-nar', '--store', store, p.nixPath, '-o', outFile]),
        ])
        assert.equal(toStdout.code, 0, toStdout.stderr)
        assert.equal(toStdout.stderr, '')
        assertSameBytes(toStdout.stdout, p.dump, 'export-nar stdout vs nix-store --dump')
        assert.equal(toFile.code, 0, toFile.stderr)
        assert.equal(toFile.stdout.length, 0, 'export-nar -o writes nothing to stdout')
        assertSameBytes(fs.readFileSync(outFile), p.dump, 'export-nar -o FILE vs nix-store --dump')
        assert.deepEqual(fs.readdirSync(outDir), [`${kind}.nar`], 'no temp file left next to FILE')
      })

      test("import --nar of Nix's NAR gives the same store path (stdin and FILE)", { skip: SKIP, concurrency: 3 }, async (t) => {
        const p = P(kind)
        const want = p.nixPath + '\n'
        const cases: Array<{ label: string; args: string[]; input?: Buffer }> = CLI_KINDS.has(kind)
          ? [
              { label: '--nar - --name', args: ['--nar', '-', '--name', kind], input: p.dump },
              { label: '--nar FILE --name', args: ['--nar', p.narFile, '--name', kind] },
              { label: '--nar FILE (name from FILE = <kind>.nar)', args: ['--nar', p.narFile] },
            ]
          : [{ label: 'the import --nar op (in-process)', args: [] }]
        await subtests(
          t,
          cases,
          (c) => `${c.label} into a fresh store, then export-nar round-trips`,
          async (c) => {
            const fresh = fs.mkdtempSync(path.join(root, `nar-${kind}-`))
            if (c.args.length === 0) {
              const opened = await openStore({ url: fresh })
              try {
                assert.equal((await importNar(opened, fs.createReadStream(p.narFile), kind)).storePath + '\n', want)
              } finally {
                await opened.close()
              }
            } else {
              const r = await runCli(['import', '--store', fresh, ...c.args], { input: c.input })
              assert.equal(r.code, 0, r.stderr)
              assert.equal(r.stdout.toString(), want)
            }
            // What the import stored, read back in-process (export-nar through the CLI: the test above).
            assertSameBytes(await exportNarOutput(fresh, p.nixPath), p.dump, `export-nar after import ${c.label}`)
          },
        )
      })

      test('narinfo matches the .narinfo nix copy writes', { skip: SKIP }, async () => {
        const p = P(kind)
        const ran = async (args: string[]) => {
          const r = await runCli(args)
          assert.equal(r.code, 0, r.stderr)
          return r.stdout
        }
        const printed = CLI_KINDS.has(kind)
          ? await Promise.all([ran(['narinfo', '--store', store, p.nixPath]), ran(['narinfo', '--json', '--store', store, p.nixPath])])
          : await narinfoInProcess(store, p.nixPath).then((o) => [Buffer.from(o.text), Buffer.from(o.json)])
        const [text, json] = printed.map((stdout) => stdout.toString()) as [string, string]
        const ours = narinfoFields(text)
        const theirs = narinfoFields(p.nixNarinfo)
        for (const k of ['StorePath', 'NarHash', 'NarSize', 'CA', 'References']) {
          assert.deepEqual(ours.get(k), theirs.get(k), `narinfo ${k}`)
        }
        assert.deepEqual(theirs.get('References'), [''], 'nix-store --add paths have no references')
        assert.ok(!theirs.has('Sig'), 'Nix signed the path; no key was configured')
        assert.equal(text, p.nixNarinfo, 'whole narinfo text, line for line')
        // --json: one line, what `nix path-info --json` says of the path in that binary cache.
        assert.match(json, /^[^\n]+\n$/)
        assert.deepEqual([JSON.parse(json)], await nixJson(['path-info', '--json', '--store', `file://${cache}`, p.nixPath]))
      })

      // Every tree, sub-path and flag set is compared in-process (test/ops/ls-cat.test.ts); through the CLI, one tree.
      if (kind === 'mixed') {
        test('ls through the CLI agrees with nix store ls, for each flag set (--json byte for byte, no newline)', { skip: SKIP, concurrency: PARALLEL }, async (t) => {
          const p = P(kind)
          await subtests(
            t,
            LS_FLAGS,
            (flags) => `ls ${flags.join(' ')} <path>`.replace(/ +/g, ' '),
            async (flags) => {
              const [ours, theirs] = await Promise.all([
                runCli(['ls', '--store', store, ...flags, p.nixPath]),
                runNix('nix', ['store', 'ls', '--store', nix.url, ...flags, p.nixPath]),
              ])
              assert.equal(theirs.code, 0, `nix store ls failed: ${theirs.stderr}`)
              assert.equal(ours.code, 0, ours.stderr)
              assert.equal(ours.stderr, '')
              assertSameBytes(ours.stdout, theirs.stdout, `ls ${flags.join(' ')} ${p.nixPath}`)
            },
          )
        })

        test('cat of regular files through the CLI equals nix store cat and the input bytes', { skip: SKIP, concurrency: PARALLEL }, async (t) => {
          const p = P(kind)
          await subtests(
            t,
            p.walk.files,
            (rel) => `cat <path>/${rel}`,
            async (rel) => {
              const target = sp(p.nixPath, rel)
              const [ours, theirs] = await Promise.all([runCli(['cat', '--store', store, target]), runNix('nix', ['store', 'cat', '--store', nix.url, target])])
              assert.equal(theirs.code, 0, `nix store cat failed: ${theirs.stderr}`)
              assert.equal(ours.code, 0, ours.stderr)
              assert.equal(ours.stderr, '')
              assertSameBytes(ours.stdout, theirs.stdout, `cat ${target} vs nix store cat`)
              assertSameBytes(ours.stdout, fs.readFileSync(path.join(p.input, rel)), `cat ${target} vs input file`)
            },
          )
        })
      }

      const notFiles = (p: Prepared) => [...p.walk.dirs.slice(0, 2), ...p.walk.symlinks.slice(0, 3)]
      test('cat of a directory or symlink fails like nix store cat', { skip: SKIP, concurrency: PARALLEL }, async (t) => {
        const p = P(kind)
        const cases = notFiles(p)
        if (cases.length === 0) return t.skip(`${kind} has no directory or symlink`)
        await subtests(
          t,
          cases,
          (rel) => `cat ${rel ? `<path>/${rel}` : '<path>'} (${p.walk.dirs.includes(rel) ? 'directory' : 'symlink'})`,
          async (rel) => {
            const target = sp(p.nixPath, rel)
            const theirs = await runNix('nix', ['store', 'cat', '--store', nix.url, target])
            assert.notEqual(theirs.code, 0, 'nix store cat should fail')
            let stderr: string
            if (CLI_KINDS.has(kind)) {
              const ours = await runCli(['cat', '--store', store, target])
              assertOneError(ours, `cat ${target}`)
              stderr = ours.stderr
            } else stderr = await catErrorInProcess(store, target)
            assert.match(stderr, /is not a regular file/)
            assert.equal(stderr, theirs.stderr, 'same message as Nix')
          },
        )
      })
    })
  }

  describe('errors (our CLI only)', () => {
    const ABSENT_ZEROS = '/nix/store/00000000000000000000000000000000-absent'
    const cases = (): Array<{ label: string; arg: string; subpath?: boolean }> => {
      const mixed = P('mixed').nixPath
      return [
        { label: 'absent store path', arg: ABSENT_ZEROS },
        { label: 'absent name for a present hash', arg: `${mixed.slice(0, '/nix/store/'.length + 32)}-othername` },
        { label: 'malformed /nix/store/foo', arg: '/nix/store/foo' },
        { label: 'malformed hash (non-nixbase32 chars)', arg: '/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x' },
        { label: 'path outside the store dir', arg: '/tmp/x/y' },
        { label: 'missing sub-path', arg: `${mixed}/nope`, subpath: true },
        { label: 'sub-path below a regular file', arg: `${mixed}/run.sh/x`, subpath: true },
        { label: 'sub-path through a symlink', arg: `${mixed}/link/x`, subpath: true },
      ]
    }
    /**
     * What each command prints, in-process: the op it runs and its
     * rendering. Every case runs so; through the CLI (a process each), the
     * cases in CLI_CASES, a path that is not there and one that is malformed.
     */
    const OUTPUT: Record<string, (s: Store, arg: string) => Promise<AsyncIterable<Uint8Array> | Iterable<Uint8Array>>> = {
      'export-nar': exportNar,
      ls: async (s, arg) => listText(s, arg, {}),
      cat: catFile,
      narinfo: async (s, arg) => [Buffer.from(renderNarInfo(narInfoFields(await narInfo(s, arg), s.storeDir)))],
    }
    const CLI_CASES = new Set(['absent store path', 'malformed /nix/store/foo'])
    for (const cmd of Object.keys(OUTPUT)) {
      test(`${cmd}: bad paths give one error line and no output`, { skip: SKIP, concurrency: PARALLEL }, async (t) => {
        const opened = await openStore({ url: store, mustExist: true })
        try {
          await subtests(
            t,
            cases(),
            (c) => `${cmd} ${c.label}`,
            async (c) => {
              if (CLI_CASES.has(c.label)) return assertOneError(await runCli([cmd, '--store', store, c.arg]), `${cmd} ${c.arg}`)
              let printed = 0
              await assert.rejects(
                (async () => {
                  for await (const chunk of await OUTPUT[cmd]!(opened, c.arg)) printed += chunk.length
                })(),
                (e: Error) => e instanceof StoreError && !e.message.includes('\n'),
                `${cmd} ${c.arg}: want one StoreError with a one-line message`,
              )
              assert.equal(printed, 0, `${cmd} ${c.arg}: output before the error`)
            },
          )
        } finally {
          await opened.close()
        }
      })
    }

    // Import failures go to a store of their own: other suites run at the
    // same time and write temp files to the main store.
    let errStore = ''
    before(async () => {
      if (SKIP) return
      errStore = path.join(root, 'store-import-errors')
      const r = await runCli(['import', '--store', errStore, P('single-file').input])
      assert.equal(r.code, 0, r.stderr)
    })

    /** Relative paths of every file below `dir` (recursive). */
    const listing = (dir: string): string[] => (fs.existsSync(dir) ? (fs.readdirSync(dir, { recursive: true }) as string[]).sort() : [])

    /**
     * Runs our import; if it blocks (e.g. opened a FIFO for reading: no CPU
     * used for 20 s, which a merely slow run on a loaded machine never
     * shows), unblocks it and fails.
     */
    async function importWithTimeout(arg: string, fifos: string[]): Promise<CliExit> {
      const run = spawnCli(['import', '--store', errStore, arg])
      if (!(await blockedFor(run.child.pid!, 20_000, run.exited))) return run.exited
      for (const f of fifos) {
        try {
          fs.closeSync(fs.openSync(f, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)) // EOF for a blocked reader
        } catch {}
      }
      await run.exited
      assert.fail(`import ${arg} blocked for 20 s (it read the FIFO)`)
    }

    const importCases = [
      { label: 'nonexistent path', make: (d: string) => ({ arg: path.join(d, 'does-not-exist'), fifos: [] as string[] }) },
      {
        label: 'FIFO',
        make: (d: string) => {
          const f = path.join(d, 'fifo')
          execFileSync('mkfifo', [f])
          return { arg: f, fifos: [f] }
        },
      },
      {
        label: 'directory with a FIFO after a regular file',
        make: (d: string) => {
          const dir = path.join(d, 'withfifo')
          fs.mkdirSync(path.join(dir, 'sub'), { recursive: true })
          fs.writeFileSync(path.join(dir, 'a.txt'), 'a regular file first\n'.repeat(1000))
          const f = path.join(dir, 'sub', 'fifo')
          execFileSync('mkfifo', [f])
          return { arg: dir, fifos: [f] }
        },
      },
    ]
    // One after another: run side by side (subtests inherit the file's concurrency), one
    // case's import wrote its temp file into the shared store as another looked at tmp/.
    describe('import failures leave the store as it was', { concurrency: 1 }, () => {
      for (const c of importCases) {
        test(`import of a ${c.label}: one error line, nothing registered, tmp/ clean`, { skip: SKIP }, async () => {
          const d = fs.mkdtempSync(path.join(root, 'bad-'))
          const { arg, fifos } = c.make(d)
          const pathinfoBefore = listing(path.join(errStore, 'pathinfo'))
          assert.ok(pathinfoBefore.length > 0, 'the store already holds a path')
          assert.deepEqual(listing(path.join(errStore, 'tmp')), [], 'tmp/ is empty before')
          const r = await importWithTimeout(arg, fifos)
          assertOneError(r, `import ${arg}`)
          assert.deepEqual(listing(path.join(errStore, 'pathinfo')), pathinfoBefore, 'no new entries under pathinfo/')
          assert.deepEqual(listing(path.join(errStore, 'tmp')), [], 'no leftover files in tmp/')
        })
      }
    })
  })
})
