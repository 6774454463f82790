import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli, spawnCli } from '../helpers/cli.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { runNix } from '../helpers/nix.js'
import { buildNixClosure, whyReferrersDiffer, importNixClosure, type NixClosure } from '../helpers/nix-closure.js'
import { rng } from '../helpers/trees.js'
import { verifyReport } from '../helpers/ops.js'
import { openStore } from '../../src/backends/open-store.js'
import { queryPaths } from '../../src/ops/query.js'

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-query-'))
const built = buildNixClosure(work)
if (built.skip) console.log(`skipping the query tests against Nix: ${built.skip}`)

async function nixQuery(args: string[], store?: string): Promise<string> {
  const r = await runNix('nix-store', [...(store ? ['--store', store] : []), '-q', ...args])
  assert.equal(r.code, 0, r.stderr.toString())
  return r.stdout.toString()
}

describe('query against nix-store -q on the same closure', { skip: built.skip }, () => {
  const c = built.closure as NixClosure
  const n = c?.byName ?? {}
  const ours = path.join(work, 'ours')
  let daemon: RunningDaemon | undefined
  /** Why referrers in /nix/store cannot be compared, if other paths there refer to the diamond. */
  let foreignReferrers: string | undefined

  before(async () => {
    await importNixClosure(c, ours)
    foreignReferrers = await whyReferrersDiffer(c)
  })
  after(async () => {
    await daemon?.stop()
  })

  const same = async (args: string[]) => {
    const r = await runCli(['query', '--store', ours, ...args])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, '')
    assert.equal(r.stdout.toString(), await nixQuery(args), `query ${args.join(' ')}`)
  }

  // Every query on one path and several is compared in-process (test/ops/query.test.ts); through the CLI, one of each.
  test('--references, --requisites (-R), --tree and --graph print what Nix prints', async () => {
    for (const args of [
      ['--references', n['fx-top']!],
      ['-R', n['fx-top']!],
      ['--tree', n['fx-right']!, n['fx-top']!],
      ['--graph', n['fx-top']!],
    ]) {
      await same(args)
    }
  })

  test('--referrers and --referrers-closure print what Nix prints', async (t) => {
    if (foreignReferrers) return t.skip(foreignReferrers)
    for (const args of [
      ['--referrers', n['fx-right']!],
      ['--referrers-closure', n['fx-left']!, n['fx-top']!],
    ]) {
      await same(args)
    }
  })

  test('--json is one compact line with the same paths in the same order', async () => {
    const r = await runCli(['query', '--store', ours, '--json', '-R', n['fx-top']!])
    assert.equal(r.code, 0, r.stderr)
    const text = r.stdout.toString()
    assert.equal(text.split('\n').length, 2, 'one line')
    assert.deepEqual(JSON.parse(text), (await nixQuery(['-R', n['fx-top']!])).trim().split('\n'))
  })

  test('--roots: each root whose path keeps the argument alive, ROOT -> PATH as Nix prints its roots', async () => {
    // Nix's side: the closure in a private store, with an indirect root to the top.
    const nixStore = `local?root=${path.join(work, 'nix-roots')}`
    const copied = await runNix('nix', ['copy', '--no-check-sigs', '--to', nixStore, c.top])
    assert.equal(copied.code, 0, copied.stderr.toString())
    const link = path.join(work, 'result')
    const rooted = await runNix('nix-store', ['--store', nixStore, '--realise', c.top, '--add-root', link])
    assert.equal(rooted.code, 0, rooted.stderr.toString())
    const theirs = await nixQuery(['--roots', n['fx-leaf']!], nixStore)
    assert.equal(theirs, `${link} -> ${c.top}\n`)
    // Ours: a named root to the top.
    const store = path.join(work, 'roots')
    await importNixClosure(c, store)
    const added = await runCli(['roots', 'add', '--store', store, 'app', c.top])
    assert.equal(added.code, 0, added.stderr)
    const r = await runCli(['query', '--store', store, '--roots', n['fx-leaf']!])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString(), `${path.join(store, 'roots', 'app')} -> ${c.top}\n`)
    // A root of something that does not need the leaf is not listed; the leaf's own root is.
    await runCli(['roots', 'add', '--store', store, 'left', n['fx-left']!])
    const right = await runCli(['query', '--store', store, '--roots', '--json', n['fx-right']!])
    assert.deepEqual(JSON.parse(right.stdout.toString()), [{ link: path.join(store, 'roots', 'app'), path: c.top }])
    // Nothing keeps the top's referrers alive but its own root.
    assert.equal((await nixQuery(['--roots', c.top], nixStore)).split('\n').filter(Boolean).length, 1)
  })

  test('through a daemon, forward queries work and referrers are refused in one line (the protocol has no referrers call)', async () => {
    daemon = await startDaemon(path.join(work, 'daemon-store'), `127.0.0.1:${await freePort()}`)
    await importNixClosure(c, daemon.url)
    const r = await runCli(['query', '--store', daemon.url, '-R', n['fx-top']!])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString(), await nixQuery(['-R', n['fx-top']!]))
    for (const flag of ['--referrers', '--referrers-closure']) {
      const refused = await runCli(['query', '--store', daemon.url, flag, n['fx-leaf']!])
      assert.equal(refused.code, 1)
      assert.equal(refused.stdout.length, 0)
      assertOneErrorLine(refused.stderr, /referrers index.*run the query where the store is/)
    }
    // What the daemon stored is indexed: on its machine, against its directory, referrers work.
    if (!foreignReferrers) {
      const local = await runCli(['query', '--store', path.join(work, 'daemon-store'), '--referrers', n['fx-leaf']!])
      assert.equal(local.stdout.toString(), await nixQuery(['--referrers', n['fx-leaf']!]))
    }
    const roots = await runCli(['query', '--store', daemon.url, '--roots', n['fx-leaf']!])
    assert.equal(roots.code, 1)
    assertOneErrorLine(roots.stderr, /query --roots needs a store that can keep GC roots/)
  })

  test('copy --closure SIGKILLed at seeded random moments: the store verifies clean and referrers are exactly the stored paths that refer', async (t) => {
    const listingFile = path.join(work, 'listing.json')
    fs.writeFileSync(listingFile, JSON.stringify(c.listing))
    const started = performance.now()
    const clean = await runCli(['copy', '--closure', listingFile, '--to', path.join(work, 'clean')])
    assert.equal(clean.code, 0, clean.stderr)
    const cleanMs = performance.now() - started
    const r = rng(4242)
    const partial: number[] = []
    const RUNS = 16
    for (let i = 0; i < RUNS; i++) {
      const store = path.join(work, `killed-${i}`)
      const run = spawnCli(['copy', '--closure', listingFile, '--to', store])
      // Most of a clean run is start-up: the writes are in its second half.
      const delay = (0.3 + r() * 0.8) * cleanMs
      const timer = setTimeout(() => run.child.kill('SIGKILL'), delay)
      await run.exited.finally(() => clearTimeout(timer))
      const stored = c.listing.filter((e) => fs.existsSync(path.join(store, 'pathinfo', path.basename(e.path).slice(0, 32))))
      if (stored.length === 0) continue
      if (stored.length < c.listing.length) partial.push(stored.length)
      // verify and query --referrers in-process: what the commands find, without two process start-ups per run.
      const problems = (await verifyReport(store)).problems.map((p) => p.message)
      assert.deepEqual(problems, [], `run ${i} (killed after ${Math.round(delay)} ms): verify found problems`)
      const present = new Set(stored.map((e) => e.path))
      const expected = [...new Set(stored.flatMap((e) => c.listing.filter((x) => present.has(x.path) && x.references.includes(e.path)).map((x) => x.path)))].sort()
      const opened = await openStore({ url: store, mustExist: true })
      try {
        assert.deepEqual((await queryPaths(opened, 'referrers', stored.map((e) => e.path))).sort(), expected, `run ${i}`)
      } finally {
        await opened.close()
      }
    }
    t.diagnostic(`kills that left part of the closure: ${partial.length} of ${RUNS} (paths stored: ${partial.join(', ') || 'none'})`)
  })

  test('bad input: one error line, Nix\'s wording for an invalid path, exit 2 for usage', async () => {
    const missing = `${path.dirname(c.top)}/00000000000000000000000000000000-x`
    const r = await runCli(['query', '--store', ours, '--references', missing])
    assert.equal(r.code, 1)
    const nix = await runNix('nix-store', ['-q', '--references', missing])
    assert.equal(r.stderr, nix.stderr.toString())
    for (const args of [[n['fx-top']!], ['--references', '--referrers', n['fx-top']!], ['--references']]) {
      const u = await runCli(['query', '--store', ours, ...args])
      assert.equal(u.code, 2, args.join(' '))
      assertOneErrorLine(u.stderr, /give exactly one|at least one/)
    }
    const tree = await runCli(['query', '--store', ours, '--json', '--tree', n['fx-top']!])
    assert.equal(tree.code, 2)
    assert.equal(JSON.parse(tree.stderr).error.code, 'ERR_USAGE')
    const j = await runCli(['query', '--store', ours, '--json', '--references', missing])
    assert.equal(j.code, 1)
    assert.deepEqual(JSON.parse(j.stderr), { error: { code: 'ERR_NOT_FOUND', message: `path '${missing}' is not valid` } })
  })
})
