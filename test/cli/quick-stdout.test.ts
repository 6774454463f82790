/**
 * The hot commands' stdout (src/cli/quick-stdout.ts) writes short outputs
 * synchronously and hands longer ones to Node's stdout: the bytes arrive
 * whole and in order on every kind of stdout, and a failed write is
 * reported as Node's stdout reports it.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { REPO } from '../helpers/cli.js'
import { runProcess, spawnOwned } from '../helpers/spawn.js'

const MODULE = path.join(REPO, 'dist/cli/quick-stdout.js')

/**
 * A child that installs the quick stdout and writes `sizes` bytes in that
 * many writes (each of its own letter), then prints on stderr what it saw:
 * whether process.stdout was replaced, and the first error, if any
 * (from the 'error' event and from `errored`).
 */
const writer = (sizes: number[]): string[] => [
  '--input-type=module',
  '-e',
  `const { installQuickStdout } = await import(${JSON.stringify(MODULE)})
  const own = Object.getOwnPropertyDescriptor(process, 'stdout').get
  installQuickStdout()
  const quick = Object.getOwnPropertyDescriptor(process, 'stdout').get !== own
  let error = null
  process.stdout.on('error', (e) => { error ??= e.code })
  const sizes = ${JSON.stringify(sizes)}
  sizes.forEach((n, i) => process.stdout.write(Buffer.alloc(n, 97 + i)))
  await new Promise((r) => setTimeout(r, 0))
  process.stderr.write(JSON.stringify({ quick, error, errored: process.stdout.errored?.code ?? null }))`,
]

const expected = (sizes: number[]): Buffer => Buffer.concat(sizes.map((n, i) => Buffer.alloc(n, 97 + i)))

/** Below, across and above the 64 KiB written synchronously. */
const SIZES = [[5], [40_000, 20_000, 5], [40_000, 40_000, 30_000, 7], [200_000, 3]]

describe('quick stdout', () => {
  let dir: string
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'quick-stdout-'))
  })
  after(() => fs.rmSync(dir, { recursive: true, force: true }))

  test('a pipe gets every byte in order, short and long outputs', async () => {
    for (const sizes of SIZES) {
      const r = await runProcess(process.execPath, writer(sizes), { cwd: REPO })
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(JSON.parse(r.stderr), { quick: true, error: null, errored: null })
      assert.ok(r.stdout.equals(expected(sizes)), `sizes ${sizes}: ${r.stdout.length} bytes`)
    }
  })

  test('a regular file gets every byte in order', async () => {
    for (const sizes of SIZES) {
      const file = path.join(dir, 'out')
      const fd = fs.openSync(file, 'w')
      try {
        const r = await exited(spawnOwned(process.execPath, writer(sizes), { cwd: REPO, stdio: ['ignore', fd, 'pipe'] }))
        assert.equal(r.code, 0, r.stderr)
        assert.equal(JSON.parse(r.stderr).quick, true)
      } finally {
        fs.closeSync(fd)
      }
      assert.ok(fs.readFileSync(file).equals(expected(sizes)), `sizes ${sizes}`)
    }
  })

  test('/dev/full: ENOSPC once, as an error event and errored', async () => {
    const fd = fs.openSync('/dev/full', 'w')
    try {
      const r = await exited(spawnOwned(process.execPath, writer([5, 5]), { cwd: REPO, stdio: ['ignore', fd, 'pipe'] }))
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(JSON.parse(r.stderr), { quick: true, error: 'ENOSPC', errored: 'ENOSPC' })
    } finally {
      fs.closeSync(fd)
    }
  })

  test('a pipe nobody reads any more: EPIPE, as Node reports it', async () => {
    // A FIFO whose only reader closed before the child writes.
    const fifo = path.join(dir, 'fifo')
    execFileSync('mkfifo', [fifo])
    const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
    const fd = fs.openSync(fifo, 'w')
    fs.closeSync(reader)
    try {
      const r = await exited(spawnOwned(process.execPath, writer([5]), { cwd: REPO, stdio: ['ignore', fd, 'pipe'] }))
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(JSON.parse(r.stderr), { quick: true, error: 'EPIPE', errored: 'EPIPE' })
    } finally {
      fs.closeSync(fd)
    }
  })
})

function exited(child: ReturnType<typeof spawnOwned>): Promise<{ code: number | null; stderr: string }> {
  const err: Buffer[] = []
  child.stderr!.on('data', (c: Buffer) => err.push(c))
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stderr: Buffer.concat(err).toString() }))
  })
}
