import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { BackendError } from '../../errors.js'
import type { CallOptions } from '../../util/call-options.js'

/** One file of a binary cache, as it arrives. */
export interface CacheFile {
  body: Readable
  /** From Content-Length or the file's size, when known. */
  size?: number
}

/**
 * How the files of a binary cache are read: a folder or an HTTP server.
 * `open` answers undefined for a file the cache does not have (404, 403,
 * 410, 401 as Nix takes them; ENOENT), throws a TransientError for what a
 * later attempt may cure (a refused or reset connection, 5xx, 429, 408),
 * and gives a body whose own failures mid-way are TransientErrors too.
 */
export interface CacheTransport {
  open(rel: string, opts?: CallOptions): Promise<CacheFile | undefined>
  close(): Promise<void>
}

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

/** `body`, with a failure while reading it made a TransientError (a connection that dropped mid-file). */
export async function* transientReads(body: AsyncIterable<Uint8Array>, what: string, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  try {
    yield* body
  } catch (e) {
    signal?.throwIfAborted()
    throw new TransientError(`${what} was cut short: ${(e as Error).message}`, { cause: e })
  }
}
