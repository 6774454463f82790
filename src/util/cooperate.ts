import { setImmediate as nextMacrotask } from 'node:timers/promises'

/** How long a walk may keep the event loop before letting timers, I/O and signals run. */
const SLICE_MS = 20

/**
 * A checkpoint for long walks over castore data. Reads from a local store
 * resolve as microtasks, so an `await` alone never lets the event loop
 * turn: a walk over a huge (or hostile) tree would starve every other
 * call and the signal handlers. Every SLICE_MS the checkpoint waits for
 * one macrotask; on every call it throws if `signal` was aborted.
 */
export function cooperate(signal?: AbortSignal): () => Promise<void> {
  let sliceStart = performance.now()
  return async () => {
    signal?.throwIfAborted()
    if (performance.now() - sliceStart < SLICE_MS) return
    await nextMacrotask()
    signal?.throwIfAborted()
    sliceStart = performance.now()
  }
}
