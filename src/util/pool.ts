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
