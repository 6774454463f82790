/**
 * A store that does not exist yet is created by its first commit: a failed,
 * interrupted or killed first write leaves nothing at the store's path (or
 * an existing folder as it was), and concurrent first writers both succeed.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, test } from 'node:test'
import { openLocalStore } from '../../src/backends/local/index.js'
import { REPO, runCli, spawnCli } from '../helpers/cli.js'
import { directory, entry, nar, regular } from '../helpers/nar.js'
import { tempFiles } from '../helpers/snapshot.js'
import { mountTmpfs } from '../helpers/tmpfs.js'
import { randomBytes } from '../helpers/trees.js'

const CORPUS = path.join(REPO, 'test/corpus/nar')
const TRUNCATED = path.join(CORPUS, 'entry-truncated-before-close.nar')
const GOOD = path.join(CORPUS, 'seed.nar')
const SEED_PATH = '/nix/store/vg7b7nlwcrld582iz3k9kcr43s8ycip1-seed'

/** A NAR of 300 small distinct files: an import stages a temp file for each as it reads. */
const MANY = nar(directory(...Array.from({ length: 300 }, (_, i) => entry(`f${String(i).padStart(3, '0')}`, regular(randomBytes(4096, i).toString('latin1'))))))

const scratch = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-first-'))

async function assertValidStore(store: string): Promise<void> {
  const r = await runCli(['verify', '--store', store])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stderr, /no problems/)
}

/**
 * `import --nar -` of MANY into `store`, holding back the NAR's last byte
 * so it stays mid-import; resolves once it has staged temp files, with the
 * still-running child.
 */
async function importHeldOpen(store: string) {
  const run = spawnCli(['import', '--store', store, '--nar', '-', '--name', 'many'], { stdin: 'pipe' })
  // It is signalled with the pipe open: the write it then cannot take is no failure.
  run.child.stdin!.on('error', () => {})
  run.child.stdin!.write(MANY.subarray(0, MANY.length - 1))
  while (tempFiles(store).length === 0) {
    const done = await Promise.race([run.exited, sleep(20)])
    if (done) assert.fail(`the import ended before staging anything: ${done.stderr}`)
  }
  return run
}

describe('the first write creates the store', () => {
  test('a failed first import leaves nothing behind: no store, no staging folder', async () => {
    const dir = scratch()
    const store = path.join(dir, 'new', 'store')
    const r = await runCli(['import', '--store', store, '--nar', TRUNCATED, '--name', 'bad'])
    assert.equal(r.code, 1, r.stderr)
    // Not even the parent it had to make for its staging folder.
    assert.deepEqual(fs.readdirSync(dir), [])
  })

  test('a failed first import into an existing empty folder leaves it exactly as it was', async () => {
    const dir = scratch()
    const store = path.join(dir, 'store')
    fs.mkdirSync(store, { mode: 0o750 })
    const ino = fs.statSync(store).ino
    const r = await runCli(['import', '--store', store, '--nar', TRUNCATED, '--name', 'bad'])
    assert.equal(r.code, 1, r.stderr)
    assert.deepEqual(fs.readdirSync(dir), ['store'])
    assert.deepEqual(fs.readdirSync(store), [])
    // Then a good import makes the store in that very folder, which keeps its mode.
    const ok = await runCli(['import', '--store', store, '--nar', GOOD, '--name', 'seed'])
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(ok.stdout.toString().trim(), SEED_PATH)
    assert.equal(fs.statSync(store).ino, ino)
    assert.equal(fs.statSync(store).mode & 0o777, 0o750)
    assert.deepEqual(fs.readdirSync(dir), ['store'])
    await assertValidStore(store)
  })

  test('a staged write aborted in-process leaves nothing', async () => {
    const dir = scratch()
    const store = await openLocalStore(path.join(dir, 'store'))
    const stage = store.blobs.stage()
    await stage.put(randomBytes(5000, 1))
    await stage.put(randomBytes(3 << 20, 2))
    assert.equal(fs.readdirSync(dir).length, 1, 'the temp files are staged beside the store')
    await stage.abort()
    assert.deepEqual(fs.readdirSync(dir), [])
  })

  test('an empty mount point as the store: staged in its tmp/, left as it was on failure', async (t) => {
    const fsys = mountTmpfs(16)
    if (typeof fsys === 'string') return t.skip(fsys)
    try {
      const bad = await runCli(['import', '--store', fsys.dir, '--nar', TRUNCATED, '--name', 'bad'])
      assert.equal(bad.code, 1, bad.stderr)
      assert.deepEqual(fs.readdirSync(fsys.dir), [])
      const ok = await runCli(['import', '--store', fsys.dir, '--nar', GOOD, '--name', 'seed'])
      assert.equal(ok.code, 0, ok.stderr)
      await assertValidStore(fsys.dir)
    } finally {
      fsys.remove()
    }
  })

  test('a first import interrupted (SIGINT) mid-way leaves nothing', async () => {
    const dir = scratch()
    const run = await importHeldOpen(path.join(dir, 'store'))
    run.child.kill('SIGINT')
    const r = await run.exited
    assert.equal(r.code, 130, r.stderr)
    assert.deepEqual(fs.readdirSync(dir), [])
  })

  test('a first import killed (SIGKILL) mid-way leaves no store; the next first import creates it and clears the leftovers', async () => {
    const dir = scratch()
    const store = path.join(dir, 'store')
    const run = await importHeldOpen(store)
    run.child.kill('SIGKILL')
    assert.equal((await run.exited).signal, 'SIGKILL')
    assert.ok(!fs.existsSync(store), 'no store where the killed import was creating one')
    const leftover = fs.readdirSync(dir)
    assert.equal(leftover.length, 1, 'its staging folder, recognisable by its dead owner')
    // Reading commands see no store.
    const ls = await runCli(['verify', '--store', store])
    assert.equal(ls.code, 1)
    assert.match(ls.stderr, /^error: no store at /)
    const ok = await runCli(['import', '--store', store, '--nar', GOOD, '--name', 'seed'])
    assert.equal(ok.code, 0, ok.stderr)
    assert.deepEqual(fs.readdirSync(dir), ['store'])
    await assertValidStore(store)
  })

  test('first imports killed at moments spread over a clean run leave no store or a valid one', { timeout: 300_000 }, async (t) => {
    const dir = scratch()
    const narFile = path.join(dir, 'many.nar')
    fs.writeFileSync(narFile, MANY)
    const args = (store: string) => ['import', '--store', store, '--nar', narFile, '--name', 'many']
    const clean = await spawnCli(args(path.join(dir, 'clean'))).exited
    assert.equal(clean.code, 0, clean.stderr)
    const landed = { none: 0, valid: 0, exited: 0 }
    const RUNS = 6
    for (let run = 0; run < RUNS; run++) {
      const store = path.join(dir, `s${run}`)
      const r = spawnCli(args(store))
      const timer = setTimeout(() => r.child.kill('SIGKILL'), (clean.ms * 1.2 * run) / RUNS)
      const exit = await r.exited
      clearTimeout(timer)
      if (exit.signal !== 'SIGKILL') {
        assert.equal(exit.code, 0, exit.stderr)
        landed.exited++
      }
      if (!fs.existsSync(store)) landed.none++
      else {
        await assertValidStore(store)
        if (exit.signal === 'SIGKILL') landed.valid++
      }
      const again = await runCli(args(store))
      assert.equal(again.code, 0, again.stderr)
      assert.equal(again.stdout.toString(), clean.stdout.toString())
    }
    t.diagnostic(`kills left no store ${landed.none} times, a valid store ${landed.valid} times; ${landed.exited} runs finished first`)
    // A kill after the store was made may leave its staging folder beside it: gc clears it.
    for (let run = 0; run < RUNS; run++) assert.equal((await runCli(['gc', '--store', path.join(dir, `s${run}`)])).code, 0)
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('.')), [])
  })
})
