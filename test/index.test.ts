/**
 * The library entry as a user meets it: the script of README.md's "Using
 * the engine from TypeScript", run as written from a folder of its own
 * where `tvix-store` is an installed package (a node_modules link to this
 * checkout, so the package's `exports` and built dist/ are what resolve),
 * against a temp store. Its NAR must be the bytes `nix-store --dump` writes,
 * its store path the one `nix-store --add` prints; and it type-checks
 * against the package's declared types.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { REPO } from './helpers/cli.js'
import { NixStore, nixMissing } from './helpers/nix.js'
import { runProcess } from './helpers/spawn.js'
import { makeTree } from './helpers/trees.js'

const SECTION = '## Using the engine from TypeScript'

/** The first ```ts block of the README's library section. */
function readmeScript(): string {
  const readme = fs.readFileSync(path.join(REPO, 'README.md'), 'utf8')
  const section = readme.indexOf(SECTION)
  assert.ok(section >= 0, `README.md has no "${SECTION}" section`)
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(section))
  assert.ok(block, `no ts code block under "${SECTION}"`)
  return block[1]!
}

/** A folder (in `tmp`) where `import … from 'tvix-store'` finds this checkout as an installed package. */
function appDir(tmp: string, script: string): string {
  const app = path.join(tmp, 'app')
  fs.mkdirSync(path.join(app, 'node_modules'), { recursive: true })
  fs.symlinkSync(REPO, path.join(app, 'node_modules', 'tvix-store'))
  fs.writeFileSync(path.join(app, 'package.json'), '{"type":"module"}\n')
  fs.writeFileSync(path.join(app, 'nar.ts'), script)
  return app
}

test('README: the library script imports a directory and writes the NAR nix-store --dump writes', { skip: nixMissing() }, async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'readme-'))
  try {
    const app = appDir(tmp, readmeScript())
    const tree = makeTree(tmp, 'mixed', 'src')
    // `npx tsx nar.ts URL DIR`, as the README runs it: tsx is this checkout's, the script and its imports the app's.
    const tsx = path.join(REPO, 'node_modules', '.bin', 'tsx')
    const r = await runProcess(tsx, [path.join(app, 'nar.ts'), path.join(tmp, 'store'), tree], { cwd: app })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, new NixStore(path.join(tmp, 'nix')).add(tree) + '\n')
    assert.ok(r.stdout.equals(NixStore.dump(tree)), 'NAR bytes differ from nix-store --dump')
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
})

test('README: the library script type-checks against the package\'s types (dist/index.d.ts)', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'readme-'))
  try {
    const app = appDir(tmp, readmeScript())
    const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc')
    const options = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck']
    const nodeTypes = ['--types', 'node', '--typeRoots', path.join(REPO, 'node_modules', '@types')]
    const r = await runProcess(process.execPath, [tsc, ...options, ...nodeTypes, 'nar.ts'], { cwd: app })
    assert.equal(r.code, 0, r.stdout.toString() + r.stderr)
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
})
