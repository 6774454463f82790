import type { Readable } from 'node:stream'
import type { CallOptions } from '../../util/call-options.js'
import { TransientError } from '../../util/retry.js'

/** One file of a binary cache, as it arrives. */
export interface CacheFile {
  body: Readable
  /** From Content-Length or the file's size, when known. */
  size?: number
  /**
   * The same bytes (instead of `body`, which is then only destroyed) in
   * buffers that take turns: each piece is valid only until the next is
   * asked for. A folder's file offers this: a fresh 1 MiB buffer per read
   * costs page faults and GC, a third of an uncompressed NAR's ingest.
   */
  reusing?: () => AsyncIterable<Uint8Array>
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

export { type RetryOptions, TransientError, withRetries } from '../../util/retry.js'

/** `body`, with a failure while reading it made a TransientError (a connection that dropped mid-file). */
export async function* transientReads(body: AsyncIterable<Uint8Array>, what: string, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  try {
    yield* body
  } catch (e) {
    signal?.throwIfAborted()
    throw new TransientError(`${what} was cut short: ${(e as Error).message}`, { cause: e })
  }
}
