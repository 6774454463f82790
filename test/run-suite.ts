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
import os from 'node:os'
import path from 'node:path'
import { run } from 'node:test'
import { tap } from 'node:test/reporters'
import { fileURLToPath } from 'node:url'
import type { SuiteBackends } from './helpers/suite-servers.js'
import { backendsDir, missingPrograms, startBackends } from './helpers/servers.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** Slowest first (file wall times of a full run). */
const HEAVIEST = [
  'test/e2e/crash.test.ts',
  'test/e2e/gc-concurrency.test.ts',
  // On S3 + PostgreSQL: their servers start beside the two files above.
  'test/e2e/shared-gc.test.ts',
  'test/e2e/shared-daemon.test.ts',
  'test/e2e/shared-store.test.ts',
  'test/e2e/shared-verify.test.ts',
  'test/e2e/daemon.test.ts',
  'test/daemon/streams.test.ts',
  'test/e2e/s3-blobs.test.ts',
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

/**
 * S3 and PostgreSQL, when a test file uses them (test/helpers/suite-servers.ts): started
 * once for the suite, beside the first files (a minute of start-up on a
 * loaded machine, not spent in series), and announced in a file the test
 * files wait for. Stopped when the suite ends or is interrupted.
 */
async function startSuiteBackends(): Promise<() => Promise<void>> {
  // A file that does not exist is left to node:test to report.
  const uses = (f: string) => fs.existsSync(path.resolve(REPO, f)) && fs.readFileSync(path.resolve(REPO, f), 'utf8').includes('/helpers/suite-servers.js')
  const users = files.filter(uses)
  if (users.length === 0) return async () => {}
  const dir = backendsDir()
  const file = path.join(dir, 'servers.json')
  process.env.TVIX_TEST_BACKENDS_FILE = file
  const say = (what: SuiteBackends) => {
    fs.writeFileSync(file + '.new', JSON.stringify(what))
    fs.renameSync(file + '.new', file)
  }
  const missing = missingPrograms()
  if (missing) {
    say({ skip: missing })
    return async () => fs.rmSync(dir, { recursive: true, force: true })
  }
  const starting = startBackends(dir).then(
    (running) => {
      say({ ok: { s3: running.s3, pg: running.pg } })
      return running
    },
    (e: Error) => {
      say({ fail: e.message })
      return undefined
    },
  )
  let stopped: Promise<void> | undefined
  const stop = () =>
    (stopped ??= (async () => {
      await (await starting)?.stop()
      fs.rmSync(dir, { recursive: true, force: true })
    })())
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => void stop().finally(() => process.exit(128 + os.constants.signals[sig])))
  }
  return stop
}

const stopBackends = await startSuiteBackends()
const stream = run({ files: files.map((f) => path.resolve(REPO, f)), concurrency: 2 })
stream.on('test:fail', (t: { todo?: string | boolean }) => {
  if (!t.todo) process.exitCode = 1
})
stream.on('close', () => void stopBackends())
stream.compose(tap).pipe(process.stdout)
