import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { runCli } from '../helpers/cli.js'
import { freePort, startDaemon } from '../helpers/daemon.js'
import { snapshot } from '../helpers/snapshot.js'

const scratch = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-gccli-'))

function fileTree(files: Record<string, string>): string {
  const dir = scratch()
  for (const [rel, data] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
    fs.writeFileSync(path.join(dir, rel), data)
  }
  return dir
}

async function ok(args: string[]): Promise<string> {
  const r = await runCli(args)
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout.toString()
}

/** Fails with exactly one `error:` line on stderr and nothing on stdout. */
async function fails(args: string[], message: RegExp, code?: number): Promise<void> {
  const r = await runCli(args)
  assert.notEqual(r.code, 0, args.join(' '))
  if (code !== undefined) assert.equal(r.code, code)
  assert.equal(r.stdout.toString(), '')
  const lines = r.stderr.toString().trimEnd().split('\n')
  assert.equal(lines.length, 1, r.stderr.toString())
  assert.match(lines[0]!, /^error: /)
  assert.match(lines[0]!, message)
}

describe('gc, roots and verify commands', () => {
  test('roots add / list / remove, import --root, and gc --prune honouring them', async () => {
    const store = path.join(scratch(), 's')
    const kept = (await ok(['import', '--store', store, '--root', 'kept', fileTree({ a: 'kept' })])).trim()
    const also = (await ok(['import', '--store', store, fileTree({ b: 'also' })])).trim()
    const gone = (await ok(['import', '--store', store, fileTree({ c: 'gone' })])).trim()
    assert.equal(await ok(['roots', 'add', '--store', store, 'also', also]), `also -> ${also}\n`)
    assert.equal(await ok(['roots', 'list', '--store', store]), `also -> ${also}\nkept -> ${kept}\n`)
    assert.deepEqual(JSON.parse(await ok(['roots', 'list', '--store', store, '--json'])), [
      { name: 'also', path: also, valid: true },
      { name: 'kept', path: kept, valid: true },
    ])
    await ok(['roots', 'remove', '--store', store, 'also'])
    // Dry run: the paths that would go on stdout, nothing deleted.
    const before = snapshot(store)
    const dry = await runCli(['gc', '--store', store, '--prune', '--grace', '0', '--dry-run'])
    assert.equal(dry.code, 0)
    assert.equal(dry.stdout.toString(), [also, gone].sort().join('\n') + '\n')
    assert.match(dry.stderr.toString(), /^2 store paths would be deleted, 4 objects .* to free, in [\d.]+ s\n$/)
    assert.deepEqual(snapshot(store), before)
    const report = JSON.parse(await ok(['gc', '--store', store, '--prune', '--grace', '0', '--json']))
    assert.deepEqual(report.paths.sort(), [also, gone].sort())
    assert.equal(report.blobs, 2)
    assert.equal(report.directories, 2)
    assert.equal(report.dryRun, false)
    assert.equal(typeof report.seconds, 'number')
    assert.equal(await ok(['cat', '--store', store, `${kept}/a`]), 'kept')
    await fails(['export-nar', '--store', store, gone], /is not valid/)
    const v = await runCli(['verify', '--store', store, '--nar-hash'])
    assert.equal(v.code, 0, v.stdout.toString())
    assert.match(v.stderr.toString(), /^checked 1 path, 1 directory and 1 blob \(0 packed\) in [\d.]+ s: no problems\n$/)
  })

  test('copy --root registers the root in the target, in the same step', async () => {
    const from = path.join(scratch(), 'from')
    const to = path.join(scratch(), 'to')
    const p = (await ok(['import', '--store', from, fileTree({ x: 'copied' })])).trim()
    assert.equal(await ok(['copy', '--from', from, '--to', to, '--root', 'mine', p]), `${p}\n`)
    assert.equal(await ok(['roots', 'list', '--store', to]), `mine -> ${p}\n`)
    await ok(['gc', '--store', to, '--prune', '--grace', '0'])
    assert.equal(await ok(['cat', '--store', to, `${p}/x`]), 'copied')
  })

  test('verify reports each problem on its own line and exits 1; --repair removes what is broken', async () => {
    const store = path.join(scratch(), 's')
    const p = (await ok(['import', '--store', store, fileTree({ f: 'precious' })])).trim()
    const blobs = path.join(store, 'blobs', 'b3')
    const shard = fs.readdirSync(blobs)[0]!
    const blob = path.join(blobs, shard, fs.readdirSync(path.join(blobs, shard))[0]!)
    fs.chmodSync(blob, 0o644)
    fs.writeFileSync(blob, 'PRECIOUS')
    const v = await runCli(['verify', '--store', store])
    assert.equal(v.code, 1)
    const lines = v.stdout.toString().trimEnd().split('\n')
    assert.equal(lines.length, 2)
    assert.match(lines[0]!, /^blob b3:\S+ is corrupt: its bytes do not match its digest$/)
    assert.equal(lines[1], `path '${p}' cannot be served: blob b3:${lines[0]!.split(' ')[1]!.slice(3)} is corrupt`)
    assert.match(v.stderr.toString(), /: 2 problems\n$/)
    const j = await runCli(['verify', '--store', store, '--json'])
    assert.equal(j.code, 1)
    assert.equal(JSON.parse(j.stdout.toString()).problems.length, 2)
    const r = await runCli(['verify', '--store', store, '--repair'])
    assert.equal(r.code, 1, 'the problems found are still reported')
    assert.match(r.stdout.toString(), new RegExp(`removed path '${p}' \\(blob b3:\\S+ is gone\\)`))
    assert.equal((await runCli(['verify', '--store', store])).code, 0)
  })

  test('usage errors and stores gc cannot run on: one line each, store untouched', async () => {
    const store = path.join(scratch(), 's')
    const p = (await ok(['import', '--store', store, fileTree({ f: 'x' })])).trim()
    const before = snapshot(store)
    await fails(['gc', '--store', store, '--older-than', '30d'], /--older-than needs --prune/, 2)
    await fails(['gc', '--store', store, '--prune', '--older-than', 'soon'], /--older-than: invalid duration "soon"/, 2)
    await fails(['gc', '--store', store, '--delete'], /--delete needs the store paths/, 2)
    await fails(['gc', '--store', store, p], /only taken with --delete/, 2)
    await fails(['gc', '--store', 'grpc+http://[::1]:1', '--grace', '0'], /^error: gc needs a store that can collect garbage, and grpc\+http:\/\/\[::1\]:1 cannot: run it where the data lives/)
    await fails(['verify', '--store', 'memory://'], /^error: verify needs a store that can verify its own data, and memory:\/\/ cannot/)
    await fails(['roots', 'add', '--store', store, '.hidden', p], /invalid GC root name "\.hidden"/)
    await fails(['roots', 'add', '--store', store, 'r', '/nix/store/00000000000000000000000000000000-nope'], /is not valid/)
    await fails(['roots', 'remove', '--store', store, 'nope'], /no GC root named "nope"/)
    await fails(['import', '--store', 'grpc+http://[::1]:1', '--root', 'r', fileTree({ g: 'y' })], /^error: import --root needs a store that can keep GC roots, and grpc\+http:\/\/\[::1\]:1 cannot/)
    await fails(['gc', '--store', store, '--delete', p, '--grace', '0', '--dry-run', '--prune'], /either --prune or --delete/, 2)
    assert.deepEqual(snapshot(store), before)
  })

  test('daemon --gc-interval sweeps orphans older than the grace period while serving', async () => {
    const store = path.join(scratch(), 's')
    const p = (await ok(['import', '--store', store, fileTree({ f: 'served' })])).trim()
    const orphan = (await ok(['import', '--store', store, fileTree({ o: 'orphaned' })])).trim()
    const hash = orphan.slice('/nix/store/'.length, '/nix/store/'.length + 32)
    fs.rmSync(path.join(store, 'pathinfo', hash))
    // Age everything past the default 10 minute grace.
    const old = new Date(Date.now() - 3600_000)
    for (const f of fs.readdirSync(store, { recursive: true }) as string[]) fs.utimesSync(path.join(store, f), old, old)
    const d = await startDaemon(store, `[::1]:${await freePort()}`, ['--gc-interval', '1s'])
    try {
      // Bounded generously: on a loaded machine the first run may come late.
      const deadline = Date.now() + 120_000
      while (!/gc: 2 orphaned objects/.test(d.log()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
      assert.match(d.log(), /gc of orphaned objects every 1s/)
      assert.match(d.log(), /gc: 2 orphaned objects and 0 leftover temp files deleted/)
      assert.equal(await ok(['cat', '--store', d.url, `${p}/f`]), 'served')
      // A fresh import through the daemon while it keeps collecting.
      const q = (await ok(['import', '--store', d.url, fileTree({ n: 'new' })])).trim()
      await new Promise((r) => setTimeout(r, 1500))
      assert.equal(await ok(['cat', '--store', d.url, `${q}/n`]), 'new')
    } finally {
      assert.equal(await d.stop(), 0)
    }
    assert.equal((await runCli(['verify', '--store', store])).code, 0)
  })
})
