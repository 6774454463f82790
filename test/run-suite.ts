/**
 * `npm test`: every test file, two at a time (one per core), the heaviest
 * first, so that the two workers end together rather than on one long file.
 * `node --test` sorts the files it is given (Node 20), which loses any order
 * written on its command line; run() keeps it. Files given as arguments are
 * run instead, in that order. The child processes get this process's
 * `--import` flags (tsx, tmp-root.ts). TAP on stdout; exit code 1 if a test
 * failed, as `node --test` does.
 */
import fs from 'node:fs'
import path from 'node:path'
import { run } from 'node:test'
import { tap } from 'node:test/reporters'
import { fileURLToPath } from 'node:url'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** Slowest first (file wall times of a full run). */
const HEAVIEST = [
  'test/e2e/crash.test.ts',
  'test/e2e/gc-concurrency.test.ts',
  'test/e2e/daemon.test.ts',
  'test/e2e/binary-cache-upload.test.ts',
  'test/e2e/binary-cache-source.test.ts',
  'test/e2e/binary-cache-serve.test.ts',
  'test/e2e/binary-cache-target.test.ts',
  'test/e2e/nix-compressions.test.ts',
  'test/e2e/deep-trees.test.ts',
  'test/e2e/mixed-stores.test.ts',
  'test/e2e/nix-interop.test.ts',
  'test/e2e/daemon-load.test.ts',
  'test/e2e/path-info.test.ts',
]

const everyFile = (fs.readdirSync(path.join(REPO, 'test'), { recursive: true }) as string[])
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => path.join('test', f))
  .sort()
const given = process.argv.slice(2)
const files = given.length > 0 ? given : [...HEAVIEST, ...everyFile.filter((f) => !HEAVIEST.includes(f))]

const stream = run({ files: files.map((f) => path.resolve(REPO, f)), concurrency: 2 })
stream.on('test:fail', (t: { todo?: string | boolean }) => {
  if (!t.todo) process.exitCode = 1
})
stream.compose(tap).pipe(process.stdout)
