/**
 * Synchronous clean-ups to run if the process is interrupted (SIGINT,
 * SIGTERM) in the middle of a write: temp files are removed rather than
 * left for gc. Registered by whoever creates such files.
 */
const tasks = new Set<() => void>()

export function onInterrupt(fn: () => void): void {
  tasks.add(fn)
}

export function runInterruptCleanups(): void {
  for (const t of tasks) {
    try {
      t()
    } catch {
      // Best effort: the process is about to exit.
    }
  }
}
