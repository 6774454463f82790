/**
 * A store that does not exist is not an empty store: reading commands on a
 * mistyped path say there is no store there (exit 1) and create nothing;
 * writing commands (import, copy --to, the daemon on its first write) create it.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { assertOneErrorLine, REPO, runCli } from '../helpers/cli.js'
import { startDaemon } from '../helpers/daemon.js'

const SEED_NAR = path.join(REPO, 'test/corpus/nar/seed.nar')
const SEED_PATH = '/nix/store/vg7b7nlwcrld582iz3k9kcr43s8ycip1-seed'

const READING: string[][] = [
  ['verify'],
  ['verify', SEED_PATH],
  ['gc'],
  ['gc', '--prune', '--dry-run'],
  ['roots', 'list'],
  ['roots', 'remove', 'app'],
  ['roots', 'add', 'app', SEED_PATH],
  ['ls', SEED_PATH],
  ['cat', `${SEED_PATH}/a.txt`],
  ['export-nar', SEED_PATH],
  ['narinfo', SEED_PATH],
]

const noStore = (dir: string, why: string) => new RegExp(`^error: no store at ${dir} \\(${why}; \`import\` or \`copy --to\` creates one\\)$`)

describe('a store that does not exist', { concurrency: 2 }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-missing-'))

  for (const args of READING) {
    test(`${args[0]} ${args[1] ?? ''}: "no store at", exit 1, nothing created`, async () => {
      const missing = path.join(root, `absent-${args.join('-').replace(/\W/g, '')}`)
      const r = await runCli([...args, '--store', missing])
      assert.equal(r.code, 1, r.stderr)
      assertOneErrorLine(r.stderr, noStore(missing, 'no such folder'))
      assert.equal(r.stdout.length, 0)
      assert.ok(!fs.existsSync(missing), `${missing} was created`)
    })
  }

  test('an existing empty folder is no store either, and stays empty', async () => {
    const empty = path.join(root, 'empty')
    fs.mkdirSync(empty)
    const r = await runCli(['verify', '--store', empty])
    assert.equal(r.code, 1, r.stderr)
    assertOneErrorLine(r.stderr, noStore(empty, 'the folder holds no store yet'))
    assert.deepEqual(fs.readdirSync(empty), [])
  })

  test('the default store not created yet: ls says so, naming it', async () => {
    const xdg = path.join(root, 'xdg')
    const r = await runCli(['ls', SEED_PATH], { env: { XDG_DATA_HOME: xdg } })
    assert.equal(r.code, 1, r.stderr)
    assertOneErrorLine(r.stderr, noStore(path.join(xdg, 'tvix-store'), 'no such folder'))
    assert.ok(!fs.existsSync(xdg))
  })

  test('copy --from a missing store says so; copy --to a missing one creates it', async () => {
    const src = path.join(root, 'src')
    assert.equal((await runCli(['import', '--store', src, '--nar', SEED_NAR, '--name', 'seed'])).code, 0)
    const missing = path.join(root, 'no-source')
    const from = await runCli(['copy', '--from', missing, '--to', path.join(root, 'dst'), SEED_PATH])
    assert.equal(from.code, 1, from.stderr)
    assertOneErrorLine(from.stderr, noStore(missing, 'no such folder'))
    assert.ok(!fs.existsSync(path.join(root, 'dst')))
    const to = await runCli(['copy', '--from', src, '--to', path.join(root, 'dst'), SEED_PATH])
    assert.equal(to.code, 0, to.stderr)
    assert.equal(to.stdout.toString(), `${SEED_PATH}\n`)
    assert.equal((await runCli(['verify', '--store', path.join(root, 'dst')])).code, 0)
  })

  test('a daemon on a new folder serves it empty, logs its absolute path, and its first write creates it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-missing-daemon-'))
    const store = path.join(dir, 'new-store')
    // Given relative to the daemon's working directory (the repository).
    const d = await startDaemon(path.relative(REPO, store), `unix:${path.join(dir, 'd.sock')}`)
    try {
      assert.match(d.log(), new RegExp(` serving ${store} at grpc\\+unix://`))
      assert.ok(!fs.existsSync(store))
      const ls = await runCli(['ls', '--store', d.url, SEED_PATH])
      assert.equal(ls.code, 1)
      assertOneErrorLine(ls.stderr, new RegExp(`^error: path '${SEED_PATH}' is not valid$`))
      const put = await runCli(['import', '--store', d.url, '--nar', SEED_NAR, '--name', 'seed'])
      assert.equal(put.code, 0, put.stderr)
      assert.ok(fs.existsSync(path.join(store, 'tvix-store.json')))
    } finally {
      assert.equal(await d.stop(), 0, d.log())
    }
    fs.rmSync(dir, { recursive: true, force: true })
  })
})
