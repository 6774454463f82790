/**
 * Runs `fn` over `items` with at most `limit` calls in flight; the first
 * failure stops new calls and is thrown once the running ones settle.
 */
export async function forEachLimit<T>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]()
  let failure: { e: unknown } | undefined
  const worker = async () => {
    for (let r = it.next(); !r.done && !failure; r = it.next()) {
      try {
        await fn(r.value)
      } catch (e) {
        failure ??= { e }
      }
    }
  }
  // No more workers than items, when that is known: a closure walk calls this once per level.
  const workers = Array.isArray(items) ? Math.min(limit, items.length) : limit
  await Promise.all(Array.from({ length: Math.max(1, workers) }, worker))
  if (failure) throw failure.e
}

/**
 * A gate letting at most `limit` calls run at once; the others wait their
 * turn in order. For work that arrives over time (a DAG's nodes as their
 * dependencies finish) rather than as one list.
 */
export function limiter(limit: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let free = Math.max(1, limit)
  const waiting: Array<() => void> = []
  return async (fn) => {
    if (free === 0) await new Promise<void>((r) => waiting.push(r))
    else free--
    try {
      return await fn()
    } finally {
      // Hand the slot straight to the next caller, or give it back.
      const next = waiting.shift()
      if (next) next()
      else free++
    }
  }
}

/**
 * `fn` over `items` with up to `limit` calls running ahead of the consumer,
 * results in the items' order. A consumer that stops early, or a failed
 * call, leaves the calls already started to settle unobserved.
 */
export async function* inOrder<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): AsyncGenerator<R> {
  const ahead: Promise<R>[] = []
  let next = 0
  const fill = () => {
    while (next < items.length && ahead.length < limit) {
      const p = fn(items[next++]!)
      p.catch(() => {})
      ahead.push(p)
    }
  }
  fill()
  while (ahead.length > 0) {
    const r = await ahead.shift()!
    fill()
    yield r
  }
}
