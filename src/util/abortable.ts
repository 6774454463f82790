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
  // Rejects the read in flight. Not a race against one long-lived promise:
  // each race would stay attached to it, holding every chunk read.
  let rejectRead: ((e: unknown) => void) | undefined
  const onAbort = () => {
    rejectRead?.(signal.reason)
    void it.return?.()?.catch(() => {})
  }
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    for (;;) {
      const r = await new Promise<IteratorResult<T>>((resolve, reject) => {
        rejectRead = reject
        // Left pending by an abort, it may still fail (the call cancelled): nobody waits for it then.
        it.next().then(resolve, reject)
      })
      rejectRead = undefined
      // A source that ended because it was returned above: cut short, not complete.
      signal.throwIfAborted()
      if (r.done) return
      yield r.value
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
    // Aborted: already returned (awaiting it again could wait on a read that never ends).
    if (!signal.aborted) await it.return?.()
  }
}

async function* toAsync<T>(src: Iterable<T>): AsyncGenerator<T> {
  yield* src
}
