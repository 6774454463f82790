/**
 * query's ops in-process against a memory:// store holding the Nix-built
 * diamond closure, compared with `nix-store -q` on the same paths. The
 * command prints these lines one per line; test/e2e/query.test.ts keeps a
 * sample through the CLI, and what only the CLI decides (flag checks,
 * --json, exit codes, the daemon's refusal).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { importClosure, parseClosureListing } from '../../src/ops/import-closure.js'
import { type ListQuery, queryGraph, queryPaths, queryTree } from '../../src/ops/query.js'
import type { Store } from '../../src/store/store.js'
import { runNix } from '../helpers/nix.js'
import { buildNixClosure, type NixClosure, whyReferrersDiffer } from '../helpers/nix-closure.js'
import { memoryStore } from '../helpers/ops.js'

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ops-query-'))
const built = buildNixClosure(work)
if (built.skip) console.log(`skipping the query ops against Nix: ${built.skip}`)

async function nixQuery(args: string[]): Promise<string> {
  const r = await runNix('nix-store', ['-q', ...args])
  assert.equal(r.code, 0, r.stderr.toString())
  return r.stdout.toString()
}

/** What `tvix-store query FLAG PATHS` prints, without the process. */
async function ours(store: Store, flag: string, paths: string[]): Promise<string> {
  const lines: string[] = []
  if (flag === '--tree') for await (const l of queryTree(store, paths)) lines.push(l)
  else if (flag === '--graph') for await (const l of queryGraph(store, paths)) lines.push(l)
  else lines.push(...(await queryPaths(store, (flag === '-R' ? 'requisites' : flag.slice(2)) as ListQuery, paths)))
  return lines.map((l) => l + '\n').join('')
}

describe('query ops (in-process, memory://) against nix-store -q on the same closure', { skip: built.skip }, () => {
  const c = built.closure as NixClosure
  const n = c?.byName ?? {}
  let store: Store
  /** Why referrers in /nix/store cannot be compared, if other paths there refer to the diamond. */
  let foreignReferrers: string | undefined

  before(async () => {
    store = await memoryStore()
    await importClosure(store, parseClosureListing(JSON.stringify(c.listing)))
    foreignReferrers = await whyReferrersDiffer(c)
  })
  after(async () => {
    await store?.close()
    fs.rmSync(work, { recursive: true, force: true })
  })

  const same = async (args: string[]) => {
    const [flag, ...paths] = args
    assert.equal(await ours(store, flag!, paths), await nixQuery(args), `query ${args.join(' ')}`)
  }

  test('--references, --requisites (-R), --tree and --graph give what Nix prints, for one path and several', async () => {
    for (const args of [
      ['--references', n['fx-top']!],
      ['--references', n['fx-right']!], // refers to itself
      ['--references', n['fx-leaf']!], // none: empty output
      ['--references', n['fx-left']!, n['fx-right']!],
      ['-R', n['fx-top']!],
      ['--requisites', n['fx-left']!, n['fx-right']!],
      ['--tree', n['fx-top']!],
      ['--tree', n['fx-right']!, n['fx-top']!], // a path shown for the first argument is [...] under the second
      ['--graph', n['fx-top']!],
      ['--graph', n['fx-left']!, n['fx-right']!],
    ]) {
      await same(args)
    }
  })

  test('--referrers and --referrers-closure give what Nix prints', async (t) => {
    if (foreignReferrers) return t.skip(foreignReferrers)
    for (const args of [
      ['--referrers', n['fx-leaf']!],
      ['--referrers', n['fx-right']!], // itself among them
      ['--referrers', n['fx-top']!],
      ['--referrers', n['fx-left']!, n['fx-right']!],
      ['--referrers-closure', n['fx-leaf']!],
      ['--referrers-closure', n['fx-left']!, n['fx-top']!],
    ]) {
      await same(args)
    }
  })

  test('a path that is not valid: the message Nix prints', async () => {
    const missing = `${path.dirname(c.top)}/00000000000000000000000000000000-x`
    const nix = await runNix('nix-store', ['-q', '--references', missing])
    await assert.rejects(ours(store, '--references', [missing]), (e: Error) => {
      assert.equal(`error: ${e.message}\n`, nix.stderr.toString())
      return true
    })
  })
})
