import fsSync from 'node:fs'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { isAlive, self } from './locks.js'

const BACKOFF_MS = [1, 5, 20, 50, 100]

/**
 * Runs `fn` holding an exclusive lock named `name` in `dir` (a file
 * created with O_EXCL holding its owner's pid and start time), for a
 * read-modify-write that must not interleave with another process's. A
 * lock whose owner no longer runs (killed while holding it) is broken.
 */
export async function withFileLock<T>(dir: string, name: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const file = path.join(dir, name)
  for (let attempt = 0; ; attempt++) {
    signal?.throwIfAborted()
    try {
      fsSync.writeFileSync(file, `${self.pid} ${self.start}`, { flag: 'wx', mode: 0o444 })
      break
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    const [pid, start] = readOwner(file)
    if (pid !== undefined && !isAlive({ pid, start: start ?? 0 })) {
      fsSync.rmSync(file, { force: true })
      continue
    }
    await sleep(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)])
  }
  try {
    return await fn()
  } finally {
    fsSync.rmSync(file, { force: true })
  }
}

function readOwner(file: string): [number | undefined, number | undefined] {
  try {
    const [pid, start] = fsSync.readFileSync(file, 'utf8').split(' ').map(Number)
    return [Number.isInteger(pid) ? pid : undefined, start]
  } catch {
    return [undefined, undefined] // released meanwhile
  }
}
