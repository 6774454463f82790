import { ConflictError, MissingDataError } from '../errors.js'

/** Attempts of a write that a concurrent gc may invalidate; each lost race needs a sweep that deleted what it used. */
const ATTEMPTS = 3

/**
 * Runs a write that can be repeated (its input is still there: files,
 * a source store) again when a sweep invalidated it (ConflictError). The
 * second run finds what the first published and skips it.
 */
export async function retryOnConflict<T>(fn: () => Promise<T>, retryable: (e: unknown) => boolean = (e) => e instanceof ConflictError): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn()
    } catch (e) {
      if (!retryable(e) || attempt >= ATTEMPTS) throw e
    }
  }
}

/**
 * What a copy or an import of files may retry: a conflict with gc, and a
 * target that refused a PathInfo for data this write sent or found there.
 * Through a daemon each call is its own session, so its gc (with a short
 * --grace) may take that data between calls; writing again sends what is
 * missing now.
 */
export function lostRaceWithGc(e: unknown): boolean {
  return e instanceof ConflictError || e instanceof MissingDataError
}
