/**
 * `--json` on every command that prints data: one compact line on stdout,
 * Nix's key names and hash formats where Nix has the concept (`nix
 * path-info --json`: path, narHash in SRI form, narSize, references, ca),
 * durations to the millisecond, and under --json every failure one JSON
 * error line on stderr. (Values are compared with real Nix in
 * test/e2e/nix-interop.test.ts; here: the shape, for every command.)
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneJsonError, runCli } from '../helpers/cli.js'
import { snapshot } from '../helpers/snapshot.js'
import { makeTree } from '../helpers/trees.js'

const SRI_SHA256 = /^sha256-[A-Za-z0-9+/]{43}=$/
const MISSING = '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-nothing-here'

let root = ''
let store = ''
let input = ''
let storePath = ''

/** Runs a command that must succeed and print exactly one line of JSON; returns it parsed. */
async function jsonLine(args: string[], opts: { input?: string } = {}): Promise<any> {
  const r = await runCli(args, opts)
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  const out = r.stdout.toString()
  assert.match(out, /^[^\n]+\n$/, `${args[0]}: one line, newline-terminated, got ${JSON.stringify(out.slice(0, 200))}`)
  return JSON.parse(out)
}

/** Runs a command that must fail with one JSON error line on stderr (and nothing on stdout). */
async function jsonError(args: string[], code: string, re: RegExp, exit = 1): Promise<void> {
  const r = await runCli(args)
  assert.equal(r.code, exit, `${args.join(' ')}: ${r.stderr}`)
  assert.equal(r.stdout.toString(), '')
  assertOneJsonError(r.stderr, code, re)
}

/** A duration in seconds, to the millisecond at most: no float noise such as 2.3127176009999997. */
function assertSeconds(s: unknown): void {
  assert.equal(typeof s, 'number')
  assert.match(String(s), /^\d+(\.\d{1,3})?$/)
}

describe('--json output', () => {
  before(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-json-'))
    store = path.join(root, 'store')
    input = makeTree(root, 'mixed')
    const r = await runCli(['import', '--store', store, input])
    assert.equal(r.code, 0, r.stderr)
    storePath = r.stdout.toString().trim()
  })
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  test('import: the entries of `nix path-info --json`', async () => {
    const [e, ...rest] = await jsonLine(['import', '--json', '--store', store, input])
    assert.equal(rest.length, 0)
    assert.deepEqual(Object.keys(e), ['path', 'narHash', 'narSize', 'references', 'ca'])
    assert.equal(e.path, storePath)
    assert.match(e.narHash, SRI_SHA256)
    assert.equal(typeof e.narSize, 'number')
    assert.deepEqual(e.references, [])
    assert.match(e.ca, /^fixed:r:sha256:[0-9a-df-np-sv-z]{52}$/)
    await jsonError(['import', '--json', '--store', store, path.join(root, 'absent')], 'ERR_NOT_FOUND', /absent/)
  })

  test("narinfo: `nix path-info --json` of the path in a binary cache", async () => {
    const j = await jsonLine(['narinfo', '--json', '--store', store, storePath])
    assert.deepEqual(Object.keys(j), ['path', 'narHash', 'narSize', 'references', 'ca', 'url', 'downloadHash', 'downloadSize'])
    assert.equal(j.path, storePath)
    assert.match(j.narHash, SRI_SHA256)
    assert.equal(j.downloadHash, j.narHash, 'the NAR is stored uncompressed')
    assert.equal(j.downloadSize, j.narSize)
    assert.match(j.url, /^nar\/[0-9a-df-np-sv-z]{52}\.nar$/)
    await jsonError(['narinfo', '--json', '--store', store, MISSING], 'ERR_NOT_FOUND', /is not valid/)
  })

  test("ls: Nix's listing on one line (without a newline, as Nix); errors are JSON too", async () => {
    const r = await runCli(['ls', '--json', '-R', '--store', store, storePath])
    assert.equal(r.code, 0, r.stderr)
    assert.doesNotMatch(r.stdout.toString(), /\n/)
    assert.equal(JSON.parse(r.stdout.toString()).type, 'directory')
    await jsonError(['ls', '--json', '--store', store, MISSING], 'ERR_NOT_FOUND', /is not valid/)
    await jsonError(['ls', '--json', '--store', store, `${storePath}/nope`], 'ERR_NOT_FOUND', /nope/)
  })

  test('copy and copy --closure: one shape, the same counts for the same tree', async () => {
    const copy = await jsonLine(['copy', '--json', '--store', store, '--to', path.join(root, 'by-path'), storePath])
    // The listing --closure reads is `nix path-info --json`'s, which is what import --json prints.
    const listing = await jsonLine(['import', '--json', '--store', store, input])
    const nixRoot = path.join(root, 'nix-root')
    fs.cpSync(input, path.join(nixRoot, storePath), { recursive: true, verbatimSymlinks: true })
    const closure = await jsonLine(['copy', '--json', '--closure', '-', '--nix-root', nixRoot, '--to', path.join(root, 'by-closure')], { input: JSON.stringify(listing) })
    assert.deepEqual(Object.keys(closure), Object.keys(copy))
    assert.deepEqual(Object.keys(copy), ['paths', 'copied', 'skipped', 'blobs', 'directories', 'bytes'])
    assert.deepEqual(closure, copy)
    assert.deepEqual(copy.copied, [storePath])
    // Again: everything is there already.
    const again = await jsonLine(['copy', '--json', '--closure', '-', '--nix-root', nixRoot, '--to', path.join(root, 'by-closure')], { input: JSON.stringify(listing) })
    assert.deepEqual(again, { ...copy, copied: [], skipped: [storePath], blobs: { copied: 0, skipped: 0 }, directories: { copied: 0, skipped: 0 }, bytes: 0 })
    await jsonError(['copy', '--json', '--store', store, '--to', path.join(root, 'none'), MISSING], 'ERR_NOT_FOUND', /is not valid/)
  })

  test('roots add, list and remove', async () => {
    const added = await jsonLine(['roots', 'add', '--json', '--store', store, 'mine', storePath])
    assert.deepEqual(added, { name: 'mine', path: storePath, valid: true })
    assert.deepEqual(await jsonLine(['roots', 'list', '--json', '--store', store]), [added])
    assert.deepEqual(await jsonLine(['roots', 'remove', '--json', '--store', store, 'mine']), [added])
    const before = snapshot(store)
    await jsonError(['roots', 'remove', '--json', '--store', store, 'mine'], 'ERR_NOT_FOUND', /no GC root named "mine"/)
    await jsonError(['roots', 'add', '--json', '--store', store, 'x', MISSING], 'ERR_NOT_FOUND', /is not valid/)
    assert.deepEqual(snapshot(store), before)
  })

  test('gc and verify: durations to the millisecond', async () => {
    const gc = await jsonLine(['gc', '--json', '--store', store, '--prune', '--dry-run', '--grace', '0'])
    assert.deepEqual(gc.paths, [storePath])
    assertSeconds(gc.seconds)
    assertSeconds(gc.writersHeldOffSeconds)
    const v = await jsonLine(['verify', '--json', '--store', store])
    assert.deepEqual(v.problems, [])
    assertSeconds(v.seconds)
    await jsonError(['gc', '--json', '--store', store, '--older-than', '30d'], 'ERR_USAGE', /--older-than needs --prune/, 2)
    await jsonError(['verify', '--json', '--store', store, 'not-a-store-path'], 'ERR_USAGE', /not-a-store-path/, 2)
  })

  test("oclif's parse errors are JSON lines too (missing flag, bad integer, unknown flag)", async () => {
    await jsonError(['copy', '--json', storePath], 'ERR_USAGE', /Missing required flag to/, 2)
    await jsonError(['copy', '--json', '--to', store, '--parallel', 'x', storePath], 'ERR_USAGE', /Expected an integer/, 2)
    await jsonError(['narinfo', '--json', '--frobnicate', storePath], 'ERR_USAGE', /frobnicate/, 2)
  })
})
