import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { NixStore, runNix } from '../helpers/nix.js'
import { buildNixClosure, importNixClosure } from '../helpers/nix-closure.js'
import { snapshot } from '../helpers/snapshot.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-delete-'))
const built = buildNixClosure(root)
if (built.skip) console.log(`skipping the delete tests against nix store delete: ${built.skip}`)

/**
 * The diamond (top -> left, right -> leaf; right refers to itself) in a
 * private Nix store and in ours; each step runs `nix store delete` and
 * `tvix-store delete` on the same paths and compares what they refuse,
 * what they delete and what path-info says afterwards.
 */
describe('delete against nix store delete on the same closure', { skip: built.skip }, () => {
  const { top, byName } = built.closure ?? { top: '', byName: {} as Record<string, string> }
  const nixStore = new NixStore(path.join(root, 'nix'))
  const store = path.join(root, 'ours')
  const nixDelete = (paths: string[]) => runNix('nix', ['store', 'delete', '--store', nixStore.url, ...paths])
  const nixRoot = (name: string) => path.join(nixStore.root, 'nix/var/nix/gcroots', name)
  before(async () => {
    nixStore.run('nix', ['copy', '--no-check-sigs', '--to', nixStore.url, top])
    await importNixClosure(built.closure!, store)
  })

  /** Both refuse: Nix with exit 1, we with one error line naming why, exit 1, and our store unchanged. */
  async function bothRefuse(paths: string[], why: RegExp, extra: string[] = []): Promise<void> {
    const theirs = await nixDelete([...extra.filter((a) => a !== '--json'), ...paths])
    assert.equal(theirs.code, 1, theirs.stderr)
    assert.match(theirs.stderr, /since it is still alive/)
    const was = snapshot(store)
    const r = await runCli(['delete', '--store', store, ...extra, ...paths])
    assert.equal(r.code, theirs.code)
    assert.equal(r.stdout.toString(), '')
    if (extra.includes('--json')) {
      assert.match(r.stderr, /^\{"error":\{"code":"ERR_ALIVE","message":"cannot delete path .* since it is still alive: .*"\}\}\n$/)
    } else {
      assertOneErrorLine(r.stderr, why)
    }
    assert.deepEqual(snapshot(store), was)
  }

  /** Both delete; path-info then says the paths are not valid, in Nix's words. */
  async function bothDelete(paths: string[], extra: string[] = []): Promise<void> {
    const theirs = await nixDelete([...extra, ...paths])
    assert.equal(theirs.code, 0, theirs.stderr)
    assert.match(theirs.stdout.toString(), new RegExp(`^${paths.length} store paths deleted`))
    const r = await runCli(['delete', '--store', store, '--grace', '0', ...extra, ...paths])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString(), [...paths].sort().map((p) => `${p}\n`).join(''))
    assert.match(r.stderr, new RegExp(`^${paths.length} store paths? deleted, \\d+ objects? .* freed, in [\\d.]+ s\\n$`))
    for (const p of paths) {
      const nixInfo = await runNix('nix', ['path-info', '--store', nixStore.url, p])
      const info = await runCli(['path-info', '--store', store, p])
      assert.equal(info.code, nixInfo.code)
      assert.equal(info.code, 1)
      assert.equal(info.stderr, nixInfo.stderr.split('\n').filter(Boolean).at(-1) + '\n')
    }
  }

  test('--dry-run and --json list what would go and delete nothing', async () => {
    const was = snapshot(store)
    const dry = await runCli(['delete', '--store', store, '--dry-run', top])
    assert.equal(dry.code, 0, dry.stderr)
    assert.equal(dry.stdout.toString(), `${top}\n`)
    assert.match(dry.stderr, /^1 store path would be deleted, /)
    const json = await runCli(['delete', '--store', store, '--dry-run', '--json', top])
    assert.equal(json.code, 0, json.stderr)
    assert.equal(json.stdout.toString().split('\n').length, 2, 'one line')
    assert.deepEqual(JSON.parse(json.stdout.toString()).paths, [top])
    assert.deepEqual(snapshot(store), was)
  })

  test('a path another path refers to is refused, alone or with only some of its referrers', async () => {
    await bothRefuse([byName['fx-leaf']!], /cannot delete path '.*-fx-leaf' since it is still alive: '.*-fx-(left|right)' refers to it/)
    await bothRefuse([byName['fx-left']!], /cannot delete path '.*-fx-left' since it is still alive: '.*-fx-top' refers to it/)
    await bothRefuse([byName['fx-left']!, byName['fx-leaf']!], /since it is still alive/, ['--json'])
    // All or nothing: the deletable top does not go either.
    await bothRefuse([top, byName['fx-leaf']!], /cannot delete path '.*-fx-leaf' since it is still alive/)
  })

  test('a path a GC root keeps is refused; with --ignore-liveness it goes, unless another path refers to it', async () => {
    fs.symlinkSync(top, nixRoot('keep'))
    const added = await runCli(['roots', 'add', '--store', store, 'keep', top])
    assert.equal(added.code, 0, added.stderr)
    await bothRefuse([top], /cannot delete path '.*-fx-top' since it is still alive: GC root 'keep' needs it/)
    await bothRefuse([byName['fx-leaf']!], /cannot delete path '.*-fx-leaf' since it is still alive: '.*' refers to it/, ['--ignore-liveness'])
    await bothDelete([top], ['--ignore-liveness'])
    fs.unlinkSync(nixRoot('keep'))
    const removed = await runCli(['roots', 'remove', '--store', store, 'keep'])
    assert.equal(removed.code, 0, removed.stderr)
  })

  test('unreferenced paths go, then what they alone referred to, a self-reference no obstacle', async () => {
    await bothDelete([byName['fx-left']!, byName['fx-right']!])
    await bothDelete([byName['fx-leaf']!])
    const all = await runCli(['path-info', '--store', store, '--all'])
    assert.equal(all.stdout.toString(), (await runNix('nix', ['path-info', '--store', nixStore.url, '--all'])).stdout.toString())
    assert.equal(all.stdout.toString(), '')
  })
})

describe('delete refusals without Nix', () => {
  test('no path, a path inside a store path, a path not in the store, a remote store: one error line', async () => {
    const store = path.join(root, 'plain')
    const src = path.join(root, 'src')
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true })
    fs.writeFileSync(path.join(src, 'sub/f'), 'f')
    const imported = await runCli(['import', '--store', store, src])
    assert.equal(imported.code, 0, imported.stderr)
    const p = imported.stdout.toString().trim()
    const was = snapshot(store)
    for (const [args, code, re] of [
      [['--store', store], 2, /give the store paths to delete/],
      [['--store', store, `${p}/sub`], 2, /is a path inside a store path; give the store path itself/],
      [['--store', store, '/nix/store/00000000000000000000000000000000-absent'], 1, /cannot delete path '.*-absent': it is not in the store/],
      [['--store', 'grpc+http://127.0.0.1:9', p], 1, /delete/],
    ] as const) {
      const r = await runCli(['delete', ...args])
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`)
      assert.equal(r.stdout.toString(), '')
      assertOneErrorLine(r.stderr, re)
    }
    assert.deepEqual(snapshot(store), was)
  })
})
