/**
 * The test helpers' ownership of what tests spawn: a test file that leaves
 * a process running (a daemon it never stopped, with whatever that started)
 * must still end, and take the process group with it. Before spawn.ts owned
 * its children, such a file kept `npm test` alive until killed by hand.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { REPO } from './cli.js'
import { blockedFor, spawnOwned } from './spawn.js'

/** Running: present and not a zombie (a killed orphan waits for init to reap it). */
const alive = (pid: number) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

/** A test file that starts a shell with a grandchild, both sleeping for ever, records their pids and never stops them. */
const leaky = (pidFile: string) => `
import fs from 'node:fs'
import { test } from 'node:test'
import { spawnOwned } from ${JSON.stringify(path.join(REPO, 'test/helpers/spawn.ts'))}
test('leaves a process group running', async () => {
  const child = spawnOwned('sh', ['-c', 'sleep 1000 & echo $!; exec sleep 1000'], { stdio: ['ignore', 'pipe', 'ignore'] })
  const grandchild = await new Promise((resolve) => child.stdout.once('data', (c) => resolve(Number(String(c).trim()))))
  // Written whole, then renamed: the test polls for the file and must never read it half-written.
  fs.writeFileSync(${JSON.stringify(pidFile + '.part')}, JSON.stringify([child.pid, grandchild]))
  fs.renameSync(${JSON.stringify(pidFile + '.part')}, ${JSON.stringify(pidFile)})
})
`

describe('processes a test file leaves running', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-spawn-'))
  after(() => fs.rmSync(dir, { recursive: true, force: true }))

  for (const how of ['its tests end', 'it is sent SIGTERM'] as const) {
    test(`are killed, group and all, when ${how}`, async () => {
      const pidFile = path.join(dir, `pids-${how.length}`)
      const file = path.join(dir, `leaky-${how.length}.test.ts`)
      fs.writeFileSync(file, leaky(pidFile))
      const args = how === 'its tests end' ? ['--import', 'tsx', '--test', file] : ['--import', 'tsx', '--input-type=module', '-e', `${leaky(pidFile)}\nsetInterval(() => {}, 1000)`]
      // Not a subprocess of this test runner's protocol: a test run of its own.
      const env = { ...process.env }
      delete env.NODE_TEST_CONTEXT
      const run = spawnOwned(process.execPath, args, { cwd: REPO, env, stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      run.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
      const exited = new Promise<number | null>((resolve) => run.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))))
      while (!fs.existsSync(pidFile)) {
        assert.equal(run.exitCode, null, `the leaky test file ended before it started its processes: ${stderr}`)
        await sleep(50)
      }
      const pids = JSON.parse(fs.readFileSync(pidFile, 'utf8')) as number[]
      if (how === 'it is sent SIGTERM') run.kill('SIGTERM')
      // A file that does not end sits idle: judged by CPU, not a clock.
      assert.equal(await blockedFor(run.pid!, 20_000, exited), false, `the test process did not end (${how})`)
      assert.equal(await exited, how === 'its tests end' ? 0 : 128 + os.constants.signals.SIGTERM)
      for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} outlived the test process`)
    })
  }
})
