/**
 * A damaged local store fails with one clear line: an I/O failure is a
 * BackendError (ERR_BACKEND) naming the store and the path, never a raw
 * `ENOTDIR: …` (ERR_INTERNAL); a corrupt PathInfo is reported by
 * `path-info --all`, not left out of it.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { assertOneErrorLine, assertOneJsonError, runCli } from '../helpers/cli.js'
import { snapshot } from '../helpers/snapshot.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-store-errors-'))
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** A store holding `files` (name -> contents), imported by the CLI; returns it and the printed store paths. */
async function storeWith(name: string, files: Record<string, string>): Promise<{ store: string; paths: string[] }> {
  const store = path.join(root, name)
  const inputs = Object.entries(files).map(([n, text]) => {
    const f = path.join(root, `${name}-${n}`)
    fs.writeFileSync(f, text)
    return f
  })
  const r = await runCli(['import', '--store', store, ...inputs])
  assert.equal(r.code, 0, r.stderr)
  return { store, paths: r.stdout.toString().trim().split('\n') }
}

describe('a local store with damage on disk', { concurrency: 2 }, () => {
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  test('import into a store whose tmp/ is a file: one ERR_BACKEND line naming the path, the store as it was', async () => {
    const { store } = await storeWith('tmp-file', { 'a.txt': 'a\n' })
    fs.rmSync(path.join(store, 'tmp'), { recursive: true })
    fs.writeFileSync(path.join(store, 'tmp'), 'not a folder\n')
    const input = path.join(root, 'new.txt')
    fs.writeFileSync(input, 'new contents\n')
    const before = snapshot(store)
    const reason = new RegExp(`store at ${escape(store)}: .*${escape(path.join(store, 'tmp'))}/\\S+: not a directory$`)

    const json = await runCli(['import', '--json', '--store', store, input])
    assert.equal(json.code, 1, json.stderr)
    assert.equal(json.stdout.length, 0)
    assertOneJsonError(json.stderr, 'ERR_BACKEND', reason)

    const text = await runCli(['import', '--store', store, input])
    assert.equal(text.code, 1, text.stderr)
    assertOneErrorLine(text.stderr, reason)
    assert.deepEqual(snapshot(store), before)
  })

  test('gc of a store whose locks/ is a file: one ERR_BACKEND line naming the path, nothing deleted', async () => {
    const { store } = await storeWith('locks-file', { 'g.txt': 'g\n' })
    fs.rmSync(path.join(store, 'locks'), { recursive: true, force: true })
    fs.writeFileSync(path.join(store, 'locks'), 'not a folder\n')
    const before = snapshot(store)
    const r = await runCli(['gc', '--json', '--store', store])
    assert.equal(r.code, 1, r.stderr)
    assert.equal(r.stdout.length, 0)
    assertOneJsonError(r.stderr, 'ERR_BACKEND', new RegExp(`store at ${escape(store)}: .*${escape(path.join(store, 'locks'))}: file already exists$`))
    assert.deepEqual(snapshot(store), before)
  })

  test('cat of a blob whose file became a folder: one ERR_BACKEND line naming the path', async () => {
    const { store, paths } = await storeWith('blob-dir', { 'b.txt': 'bee\n' })
    const blobs = fs.readdirSync(path.join(store, 'blobs/b3'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
    assert.equal(blobs.length, 1)
    const blob = path.join(blobs[0]!.parentPath, blobs[0]!.name)
    fs.rmSync(blob)
    fs.mkdirSync(blob)
    const r = await runCli(['cat', '--store', store, paths[0]!])
    assert.equal(r.code, 1, r.stderr)
    assert.equal(r.stdout.length, 0)
    assertOneErrorLine(r.stderr, new RegExp(`store at ${escape(store)}: .*${escape(blob)}: illegal operation on a directory$`))
  })

  test('path-info --all with one corrupt PathInfo: an ERR_INTEGRITY line naming it and the repair, not a shorter list', async () => {
    const { store, paths } = await storeWith('corrupt-pathinfo', { 'c.txt': 'c\n', 'd.txt': 'd\n' })
    const hash = path.basename(paths[1]!).slice(0, 32)
    const file = path.join(store, 'pathinfo', hash)
    fs.chmodSync(file, 0o644)
    fs.writeFileSync(file, 'garbage, not a PathInfo')
    const reason = new RegExp(`^(error: )?the stored PathInfo of ${hash} is corrupt \\(.*\\); \`verify --repair\` removes it$`)

    const text = await runCli(['path-info', '--all', '--store', store])
    assert.equal(text.code, 1, text.stderr)
    assert.equal(text.stdout.length, 0)
    assertOneErrorLine(text.stderr, reason)

    const json = await runCli(['path-info', '--all', '--json', '--store', store])
    assert.equal(json.code, 1, json.stderr)
    assert.equal(json.stdout.length, 0)
    assertOneJsonError(json.stderr, 'ERR_INTEGRITY', reason)

    // The intact one is still there, and `verify --repair` removes the corrupt one, as the message says.
    const repaired = await runCli(['verify', '--repair', '--store', store])
    assert.equal(repaired.code, 1, repaired.stderr)
    const listed = await runCli(['path-info', '--all', '--store', store])
    assert.equal(listed.code, 0, listed.stderr)
    assert.equal(listed.stdout.toString(), `${paths[0]}\n`)
  })
})
