import { ConflictError } from '../errors.js'

/** Attempts of a write that a concurrent gc may invalidate; each lost race needs a sweep that deleted what it used. */
const ATTEMPTS = 3

/**
 * Runs a write that can be repeated (its input is still there: files,
 * a source store) again when a sweep invalidated it (ConflictError). The
 * second run finds what the first published and skips it.
 */
export async function retryOnConflict<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn()
    } catch (e) {
      if (!(e instanceof ConflictError) || attempt >= ATTEMPTS) throw e
    }
  }
}
