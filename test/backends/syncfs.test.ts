/**
 * syncfs through the kept helper shell (src/backends/local/syncfs.ts):
 * each call answers for its own path, in order, from one shell; a failed
 * sync is false and the shell goes on; a shell that was killed fails
 * nothing later (the next call starts another); a process that synced
 * exits on its own.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { startSyncHelper, syncFilesystem } from '../../src/backends/local/syncfs.js'
import { REPO } from '../helpers/cli.js'
import { runProcess } from '../helpers/spawn.js'

const scratch = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-syncfs-'))

/** Pids of this process's children running the helper's loop. */
function helpers(): number[] {
  const found: number[] = []
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === process.pid && fs.readFileSync(`/proc/${name}/cmdline`, 'latin1').includes('sync --file-system')) found.push(Number(name))
    } catch {
      // Gone meanwhile.
    }
  }
  return found
}

describe('syncfs helper', () => {
  test('concurrent syncs each answer for their own path, from one shell', async () => {
    const dir = scratch()
    startSyncHelper()
    const got = await Promise.all([dir, path.join(dir, 'absent'), dir, path.join(dir, 'absent', 'deeper'), dir].map(syncFilesystem))
    assert.deepEqual(got, [true, false, true, false, true])
    assert.equal(helpers().length, 1)
  })

  test('a shell that was killed fails nothing later: the next sync starts another', async () => {
    const dir = scratch()
    assert.equal(await syncFilesystem(dir), true)
    const [pid] = helpers()
    assert.ok(pid, 'the helper shell runs')
    process.kill(pid, 'SIGKILL')
    // Asked before this process has seen the shell die, a sync fails (false: the caller then fsyncs each file);
    // asked after, a new shell answers it. Either way the shell is replaced by the time it settles.
    await syncFilesystem(dir)
    assert.equal(await syncFilesystem(dir), true)
    const now = helpers()
    assert.equal(now.length, 1)
    assert.notEqual(now[0], pid)
  })

  test('a path with a line break is synced on its own', async () => {
    const dir = path.join(scratch(), 'two\nlines')
    fs.mkdirSync(dir)
    assert.equal(await syncFilesystem(dir), true)
    assert.equal(await syncFilesystem(`${dir}-absent`), false)
  })

  test('a process that synced exits on its own', async () => {
    const dir = scratch()
    const script = `import { syncFilesystem } from ${JSON.stringify(path.join(REPO, 'src/backends/local/syncfs.ts'))}
      console.log(await syncFilesystem(${JSON.stringify(dir)}), await syncFilesystem(${JSON.stringify(path.join(dir, 'absent'))}))`
    const r = await runProcess(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString().trim(), 'true false')
  })
})
