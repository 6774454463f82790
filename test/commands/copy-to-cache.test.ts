/**
 * `copy --to` a binary cache, as a process: bad cache settings are one
 * error line with nothing created, and an interrupted copy removes its
 * spooled NAR and publishes nothing. (What Nix reads back is
 * test/e2e/binary-cache-target.test.ts.)
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli, spawnCli } from '../helpers/cli.js'
import { randomBytes } from '../helpers/trees.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-copy-to-cache-'))
const store = path.join(root, 'store')
let big: string

before(async () => {
  const tree = path.join(root, 'big')
  fs.mkdirSync(tree)
  // Random data: xz takes seconds over it, so a signal lands mid-NAR.
  fs.writeFileSync(path.join(tree, 'data'), randomBytes(24 << 20, 7))
  const r = await runCli(['import', '--store', store, tree])
  assert.equal(r.code, 0, r.stderr)
  big = r.stdout.toString().trim()
})

const spooled = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith('.tvix-tmp-')) : [])

describe('copy --to nix+file://', () => {
  test('bad cache settings: one error line, the right exit code, no cache folder', async () => {
    const cases: Array<[string, number, RegExp]> = [
      ['compression=lz4', 2, /^error: cannot write "lz4" compression to a binary cache; \?compression= takes none, xz, zstd, bzip2, br, gzip$/],
      [`secret-key=${root}/absent.key`, 1, /^error: cannot read the secret key file .*absent\.key \(\?secret-key=\): it does not exist$/],
    ]
    for (const [query, code, re] of cases) {
      const dir = path.join(root, 'never')
      const r = await runCli(['copy', '--store', store, '--to', `nix+file://${dir}?${query}`, big])
      assert.equal(r.code, code, r.stderr)
      assertOneErrorLine(r.stderr, re)
      assert.equal(fs.existsSync(dir), false)
    }
  })

  test('SIGINT mid-NAR: exit 130, the spooled NAR removed, no NAR file or narinfo published', async () => {
    const dir = path.join(root, 'interrupted')
    const { child, exited } = spawnCli(['copy', '--store', store, '--to', `nix+file://${dir}?compression=xz`, big])
    // Signal once the NAR is being spooled into the cache folder (a growing temp file, not nix-cache-info's).
    const spooling = () => spooled(dir).some((f) => (fs.statSync(path.join(dir, f), { throwIfNoEntry: false })?.size ?? 0) > 64 * 1024)
    await new Promise<void>((resolve, reject) => {
      const poll = setInterval(() => {
        if (spooling()) resolve()
        else if (child.exitCode !== null) reject(new Error('the copy ended before its NAR was spooled'))
        else return
        clearInterval(poll)
      }, 5)
    })
    child.kill('SIGINT')
    const exit = await exited
    assert.equal(exit.code, 130, exit.stderr)
    assertOneErrorLine(exit.stderr, /^error: interrupted \(SIGINT\)$/)
    assert.deepEqual(spooled(dir), [])
    assert.deepEqual(fs.readdirSync(path.join(dir, 'nar')), [])
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.narinfo')), [])
  })
})
