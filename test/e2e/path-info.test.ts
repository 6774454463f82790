import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing, nixPathInfo, runNix, withoutUltimate } from '../helpers/nix.js'
import { buildNixClosure, importNixClosure } from '../helpers/nix-closure.js'
import { makeSizeSamples } from '../helpers/trees.js'
import { openStore } from '../../src/backends/open-store.js'
import { pathInfoEntryJson, pathInfoLines } from '../../src/cli/path-info-output.js'
import { StoreError } from '../../src/errors.js'
import { importPath } from '../../src/ops/import-paths.js'
import { queryPathInfos, referencesFirst } from '../../src/ops/path-info.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-path-info-'))
const built = buildNixClosure(root)
if (built.skip) console.log(`skipping the path-info tests against a Nix-built closure: ${built.skip}`)
const missing = nixMissing()
if (missing) console.log(`skipping the path-info tests against a private Nix store: ${missing}`)

async function ours(args: string[]): Promise<string> {
  const r = await runCli(['path-info', ...args])
  assert.equal(r.code, 0, `path-info ${args.join(' ')}: ${r.stderr}`)
  assert.equal(r.stderr, '')
  return r.stdout.toString()
}

const nix = nixPathInfo

/**
 * What `path-info --store STORE [--json] [-r] PATHS` prints, in-process: the
 * command's op and rendering, its error as the one line (or JSON object) on
 * stderr and its exit code.
 */
async function pathInfoInProcess(url: string, args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  const json = args.includes('--json')
  const paths = args.filter((a) => !a.startsWith('-'))
  const store = await openStore({ url, mustExist: true })
  try {
    const entries = await queryPathInfos(store, paths, { recursive: args.includes('-r'), allowInvalid: json })
    const stdout = json ? JSON.stringify(entries.map((e) => pathInfoEntryJson(e, store.storeDir))) + '\n' : pathInfoLines(referencesFirst(entries), {})
    return { code: 0, stdout: Buffer.from(stdout), stderr: '' }
  } catch (e) {
    assert.ok(e instanceof StoreError, String(e))
    return { code: e.exitCode, stdout: Buffer.alloc(0), stderr: (json ? JSON.stringify({ error: e.toJSON() }) : `error: ${e.message}`) + '\n' }
  } finally {
    await store.close()
  }
}

/**
 * Our `--json` is one line; each of our objects has a subset of the fields
 * Nix prints for the same path (registrationTime and ultimate we lack),
 * each equal, and at least path, narHash, narSize and references (path
 * and valid for a path that is not valid).
 */
function assertJsonSubset(oursText: string, nixText: string): void {
  assert.equal(oursText.split('\n').length, 2, 'one line and its newline')
  assert.ok(oursText.endsWith('\n'))
  const a = JSON.parse(oursText) as Array<Record<string, unknown>>
  const b = JSON.parse(nixText) as Array<Record<string, unknown>>
  assert.deepEqual(
    a.map((e) => e.path),
    b.map((e) => e.path),
  )
  a.forEach((e, i) => {
    const theirs = b[i]!
    const required = e.valid === false ? ['path', 'valid'] : ['path', 'narHash', 'narSize', 'references']
    for (const k of required) assert.ok(k in e, `${k} missing in ${JSON.stringify(e)}`)
    for (const [k, v] of Object.entries(e)) assert.deepEqual(v, theirs[k], `${String(e.path)}: ${k}`)
    // Nix's key order, less what we lack.
    assert.deepEqual(Object.keys(e), Object.keys(theirs).filter((k) => k in e))
  })
}

describe('path-info against nix path-info on a Nix-built closure', { skip: built.skip }, () => {
  const { top, byName } = built.closure ?? { top: '', byName: {} as Record<string, string> }
  const store = path.join(root, 'diamond')
  let daemon: RunningDaemon
  before(async () => {
    await importNixClosure(built.closure!, store)
    daemon = await startDaemon(store, `127.0.0.1:${await freePort()}`)
  })
  after(async () => {
    await daemon?.stop()
  })

  // Every flag combination, several paths and --sigs are compared in-process (test/ops/path-info.test.ts); through the CLI, a sample.
  test('text: byte for byte the same (closure, sizes, human-readable; several paths; --sigs less ultimate)', async () => {
    assert.equal(await ours(['--store', store, '-rsSh', top]), await nix(['-rsSh', top]))
    const several = [byName['fx-right']!, `${byName['fx-left']}/ref`, byName['fx-leaf']!, byName['fx-right']!]
    assert.equal(await ours(['--store', store, '--recursive', '--size', '--closure-size', ...several]), await nix(['-rsS', ...several]))
    assert.equal(await ours(['--store', store, '-r', '--sigs', top]), withoutUltimate(await nix(['-r', '--sigs', top])))
  })

  test('--json: one line, the fields we have equal to Nix\'s', async () => {
    for (const flags of [[], ['-r'], ['-rS'], ['-r', '--sigs', '-s', '-h']]) {
      assertJsonSubset(await ours(['--store', store, '--json', ...flags, top]), await nix(['--json', ...flags, top]))
    }
    const deriver = JSON.parse(await ours(['--store', store, '--json', top]))[0].deriver
    assert.match(deriver, /^\/nix\/store\/[0-9a-z]{32}-fx-top\.drv$/)
  })

  test('through a daemon the output is the same', async () => {
    for (const flags of [['-rsS'], ['-rsSh', '--sigs']]) {
      assert.equal(await ours(['--store', daemon.url, ...flags, top]), await ours(['--store', store, ...flags, top]), flags.join(' '))
    }
    assertJsonSubset(await ours(['--store', daemon.url, '--json', '-rS', top]), await nix(['--json', '-rS', top]))
    assert.equal(await ours(['--store', daemon.url, '--all', '-sS']), await ours(['--store', store, '--all', '-sS']))
  })
})

describe('path-info against nix path-info on imported trees', { skip: missing }, () => {
  const nixStore = new NixStore(path.join(root, 'nix'))
  const store = path.join(root, 'trees')
  const paths: string[] = []
  before(async () => {
    // Imported in-process (test/ops/path-info.test.ts checks these paths the same way); path-info runs through the CLI below.
    const opened = await openStore({ url: store })
    try {
      for (const input of makeSizeSamples(path.join(root, 'src'))) {
        const theirs = nixStore.add(input)
        assert.equal((await importPath(opened, input)).storePath, theirs)
        paths.push(theirs)
      }
    } finally {
      await opened.close()
    }
  })

  test('text and JSON as nix path-info prints them for the same paths', async () => {
    const n = ['--store', nixStore.url]
    assert.equal(await ours(['--store', store, '-sSh', ...paths]), await nix([...n, '-sSh', ...paths]))
    assertJsonSubset(await ours(['--store', store, '--json', '-S', ...paths]), await nix([...n, '--json', '-S', ...paths]))
    assertJsonSubset(await ours(['--store', store, '--json', '--all']), await nix([...n, '--json', '--all']))
  })

  test('signatures travel with copy --closure and print as Nix prints them', async () => {
    const keys = path.join(root, 'keys')
    fs.mkdirSync(keys)
    for (const k of ['k1', 'k2']) {
      nixStore.run('nix-store', ['--generate-binary-cache-key', k, path.join(keys, `${k}.sec`), path.join(keys, `${k}.pub`)])
      nixStore.run('nix', ['store', 'sign', '--store', nixStore.url, '-k', path.join(keys, `${k}.sec`), paths[0]!])
    }
    const signed = path.join(root, 'signed')
    const listing = await nix(['--store', nixStore.url, '--json', paths[0]!])
    const r = await runCli(['copy', '--closure', '-', '--nix-root', nixStore.root, '--to', signed], { input: listing })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(await ours(['--store', signed, '--sigs', paths[0]!]), await nix(['--store', nixStore.url, '--sigs', paths[0]!]))
    const json = await ours(['--store', signed, '--json', paths[0]!])
    assertJsonSubset(json, listing)
    assert.equal(JSON.parse(json)[0].signatures.length, 2)
  })

  test('a path that is not valid: one error line in text, {"valid":false} in JSON, an error with -r', async () => {
    const n = ['--store', nixStore.url]
    const absent = '/nix/store/00000000000000000000000000000000-absent'
    const wrongName = paths[0]!.replace(/-[^/]*$/, '-wrong-name')
    // Several invalid ones: Nix names the first by path; a lookup order of our own must not show.
    // The first set through the CLI, the other two in-process (the same op, rendering and error line).
    for (const [i, bad] of [[absent], [wrongName], [wrongName, absent]].entries()) {
      const run = (args: string[]) => (i === 0 ? runCli(['path-info', '--store', store, ...args]) : pathInfoInProcess(store, args))
      const theirs = await runNix('nix', ['path-info', ...n, ...bad, paths[0]!])
      const r = await run([...bad, paths[0]!])
      assert.equal(r.code, theirs.code)
      assert.equal(r.stdout.toString(), '')
      // Nix's last line is the error; it first says it does not know how to build the path.
      assertOneErrorLine(r.stderr, /is not valid/)
      assert.equal(r.stderr, theirs.stderr.split('\n').filter(Boolean).at(-1) + '\n')

      const theirsJson = await runNix('nix', ['path-info', ...n, '--json', paths[0]!, ...bad])
      const j = await run(['--json', paths[0]!, ...bad])
      assert.equal(j.code, theirsJson.code)
      assert.equal(j.code, 0)
      assertJsonSubset(j.stdout.toString(), theirsJson.stdout.toString())
      for (const b of bad) {
        const listed = (JSON.parse(j.stdout.toString()) as Array<{ path: string }>).find((e) => e.path === b)
        assert.deepEqual(listed, { path: b, valid: false })
      }

      const theirsRec = await runNix('nix', ['path-info', ...n, '--json', '-r', ...bad])
      const rec = await run(['--json', '-r', ...bad])
      assert.equal(rec.code, theirsRec.code)
      assert.equal(rec.stdout.toString(), '')
      assert.match(rec.stderr, /^\{"error":\{"code":"ERR_NOT_FOUND","message":"path '.*' is not valid"\}\}\n$/)
    }
  })

  test('--all on an empty store prints nothing (an empty array with --json), as Nix does; a missing store is an error', async () => {
    const nixEmpty = ['--store', `local?root=${path.join(root, 'nix-empty')}`]
    const empty = ['--store', 'memory://']
    assert.equal(await ours([...empty, '--all']), await nix([...nixEmpty, '--all']))
    assert.equal(await ours([...empty, '--all']), '')
    assert.deepEqual(JSON.parse(await ours([...empty, '--all', '--json'])), JSON.parse(await nix([...nixEmpty, '--all', '--json'])))
    // Nix creates a missing local store on any use; ours says it is not there, and creates nothing.
    const missing = path.join(root, 'missing')
    const r = await runCli(['path-info', '--store', missing, '--all'])
    assert.equal(r.code, 1)
    assertOneErrorLine(r.stderr, /no store at/)
    assert.equal(fs.existsSync(missing), false, 'a read creates no store')
  })
})

describe('path-info usage errors', () => {
  test('no path, --all with paths, a path outside the store: one error line, exit 2', async () => {
    const store = path.join(root, 'usage')
    for (const [args, re] of [
      [[], /give the store paths to describe, or --all/],
      [['--all', '/nix/store/00000000000000000000000000000000-x'], /'--all' does not expect arguments/],
      [['/tmp/not-in-store'], /is not in the Nix store/],
      [['/nix/store/xyz'], /too short to be a valid store path/],
    ] as const) {
      const r = await runCli(['path-info', '--store', store, ...args])
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.equal(r.stdout.toString(), '')
      assertOneErrorLine(r.stderr, re)
    }
  })
})
