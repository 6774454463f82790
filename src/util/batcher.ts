/**
 * Group commit: callers add items and wait; one flush runs at a time over
 * everything queued since the last one began. N concurrent fsync requests
 * become a handful of flushes, each covering many items.
 */
export class Batcher<T> {
  private queue: T[] = []
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = []
  private running = false

  constructor(private readonly flush: (items: T[]) => Promise<void>) {}

  /** Resolves once a flush that includes `item` has succeeded. */
  add(item: T): Promise<void> {
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }))
    this.queue.push(item)
    void this.run()
    return p
  }

  private async run(): Promise<void> {
    if (this.running) return
    this.running = true
    try {
      while (this.queue.length > 0) {
        const items = this.queue
        const waiters = this.waiters
        this.queue = []
        this.waiters = []
        try {
          await this.flush(items)
          for (const w of waiters) w.resolve()
        } catch (e) {
          for (const w of waiters) w.reject(e)
        }
      }
    } finally {
      this.running = false
    }
  }
}
