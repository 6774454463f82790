import { setTimeout as sleep } from 'node:timers/promises'
import { BackendError } from '../errors.js'
import type { CallOptions } from './call-options.js'

/** A failure a retry may cure: the network, or a server's passing trouble. */
export class TransientError extends BackendError {}

export interface RetryOptions extends CallOptions {
  /** Attempts in all (default 4). */
  attempts?: number
  /** The first wait; each next one doubles, with ±50% jitter (default 500 ms). */
  baseDelayMs?: number
}

/**
 * Runs `attempt` until it succeeds, retrying TransientErrors with
 * exponential backoff; anything else, an abort included, fails at once.
 * Each attempt starts from scratch (a NAR's ingest too), so nothing of a
 * failed one is kept.
 */
export async function withRetries<T>(attempt: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const attempts = opts.attempts ?? 4
  const base = opts.baseDelayMs ?? 500
  for (let i = 1; ; i++) {
    try {
      return await attempt()
    } catch (e) {
      opts.signal?.throwIfAborted()
      if (!(e instanceof TransientError) || i >= attempts) throw e
    }
    // An abort ends the wait with its own reason (the interrupt), as it ends an attempt.
    await sleep(base * 2 ** (i - 1) * (0.5 + Math.random()), undefined, { signal: opts.signal }).catch((e) => {
      opts.signal?.throwIfAborted()
      throw e
    })
  }
}
