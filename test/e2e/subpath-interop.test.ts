import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { runCli } from '../helpers/cli.js'
import { NixStore, nixMissing, runNix } from '../helpers/nix.js'
import { makeSubpathTree } from '../helpers/trees.js'

const SKIP = nixMissing()

/** The `error:` line of a failed command (Nix may print warnings around it). */
const errorLine = (stderr: string) => stderr.split('\n').find((l) => l.startsWith('error:'))

/**
 * Sub-paths written the many ways a shell user writes them (a trailing
 * slash, `//`, `.`), through `cat` and `ls`, against `nix store cat`
 * and `nix store ls` on the same path: same success, output and error line.
 * Every spelling is compared in-process (test/ops/ls-cat.test.ts); here a
 * sample goes through the CLI, a success and a failure of each command.
 */
describe('sub-path spelling agrees with nix store cat/ls', { skip: SKIP }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-subpath-'))
  const ours = path.join(root, 'ours')
  let nix: NixStore
  let p: string

  before(async () => {
    const tree = makeSubpathTree(path.join(root, 'x'))
    nix = new NixStore(path.join(root, 'nix'))
    p = nix.add(tree)
    const r = await runCli(['import', '--store', ours, tree])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString().trim(), p)
  })
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  const subs = ['/a//', '/a/', '/d//b', '/l/']
  for (const cmd of ['cat', 'ls'] as const) {
    test(`${cmd}: ${subs.join(' ')}`, async () => {
      for (const sub of subs) {
        const arg = p + sub
        const theirs = await runNix('nix', ['store', cmd, '--store', nix.url, arg])
        const mine = await runCli([cmd, '--store', ours, arg])
        assert.equal(mine.code === 0, theirs.code === 0, `${cmd} ${arg}: ours ${mine.code} ${mine.stderr}, Nix ${theirs.code} ${theirs.stderr}`)
        assert.deepEqual(mine.stdout, theirs.stdout, `${cmd} ${arg}: stdout`)
        if (theirs.code !== 0) assert.equal(errorLine(mine.stderr), errorLine(theirs.stderr), `${cmd} ${arg}: error line`)
      }
    })
  }
})
