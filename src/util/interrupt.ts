import { setMaxListeners } from 'node:events'

/**
 * Synchronous clean-ups to run if the process is interrupted (SIGINT,
 * SIGTERM) in the middle of a write: temp files are removed rather than
 * left for gc. Registered by whoever creates such files.
 */
const tasks = new Set<() => void>()

const interruption = new AbortController()
// One signal for all of a command's calls (copy runs 64 at once): not a leak.
setMaxListeners(0, interruption.signal)
/**
 * Aborted when the process is interrupted (or its output fails): the
 * signal a command's store calls get, so that reads, renders and remote
 * calls in flight stop and release their files and streams.
 */
export const interrupted: AbortSignal = interruption.signal

export function onInterrupt(fn: () => void): void {
  tasks.add(fn)
}

/** Aborts `interrupted`, then runs the clean-ups. */
export function runInterruptCleanups(): void {
  interruption.abort()
  for (const t of tasks) {
    try {
      t()
    } catch {
      // Best effort: the process is about to exit.
    }
  }
}
