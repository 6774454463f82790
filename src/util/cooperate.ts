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
export function cooperate(signal?: AbortSignal): Checkpoint {
  let sliceStart = performance.now()
  const due = () => {
    signal?.throwIfAborted()
    return performance.now() - sliceStart >= SLICE_MS
  }
  const checkpoint = async () => {
    if (!due()) return
    await nextMacrotask()
    signal?.throwIfAborted()
    sliceStart = performance.now()
  }
  return Object.assign(checkpoint, { due })
}

/**
 * Awaiting the checkpoint turns the loop when the slice is over; `due()`
 * asks the same without a promise (throwing if the signal aborted), for
 * walks whose steps are synchronous: `if (checkpoint.due()) await checkpoint()`.
 */
export type Checkpoint = (() => Promise<void>) & { due(): boolean }
