/**
 * Streams that end when their call's signal aborts (CallOptions). A
 * consumer that stops reading must not keep a file or a remote call open
 * until it gets round to `return()`: aborting is enough.
 */

/**
 * A promise that rejects with the signal's reason when it aborts (never
 * resolves; safe to leave unawaited), and `dispose()` to stop listening:
 * one signal may serve a whole command's calls, so each call removes its
 * listener when it ends.
 */
export function whenAborted(signal: AbortSignal, onAbort?: () => void): { aborted: Promise<never>; dispose(): void } {
  let listener = () => {}
  const aborted = new Promise<never>((_, reject) => {
    listener = () => {
      reject(signal.reason)
      onAbort?.()
    }
  })
  aborted.catch(() => {})
  if (signal.aborted) listener()
  else signal.addEventListener('abort', listener, { once: true })
  return { aborted, dispose: () => signal.removeEventListener('abort', listener) }
}

/**
 * `src`, ended by `signal`: once it aborts, the next (or a pending) read
 * rejects with the signal's reason at once, and `src` is returned right
 * away, so its `finally` blocks close its files and calls even if nobody
 * reads on. A stream cut short never looks complete.
 */
export async function* abortable<T>(src: AsyncIterable<T> | Iterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  signal.throwIfAborted()
  const it = (Symbol.asyncIterator in src ? src : toAsync(src))[Symbol.asyncIterator]()
  const { aborted, dispose } = whenAborted(signal, () => void it.return?.()?.catch(() => {}))
  try {
    for (;;) {
      const next = it.next()
      // Left pending by an abort, it may still fail (the call cancelled): nobody waits for it.
      next.catch(() => {})
      const r = await Promise.race([next, aborted])
      // A source that ended because it was returned above: cut short, not complete.
      signal.throwIfAborted()
      if (r.done) return
      yield r.value
    }
  } finally {
    dispose()
    // Aborted: already returned (awaiting it again could wait on a read that never ends).
    if (!signal.aborted) await it.return?.()
  }
}

async function* toAsync<T>(src: Iterable<T>): AsyncGenerator<T> {
  yield* src
}
