/**
 * A byte stream that can hand on its bytes in buffers it reuses, for a
 * consumer that is done with each piece by the time it asks for the next
 * (it copies what it keeps): reading a large file then allocates nothing
 * per read (a fresh 1 MiB buffer per read cost page faults and GC, ~10 %
 * of an import's CPU). Iterated plainly, as any consumer would, every
 * piece is a buffer of its own, so a consumer that does not know the
 * contract (a remote store's upload queue) is safe.
 */
export interface ReusableSource extends AsyncIterable<Uint8Array> {
  /** The bytes it yields, known before the first (it fails rather than yield another count); undefined where only the end tells (a daemon's upload). */
  readonly size: number | undefined
  /** The same bytes in reused buffers: each piece valid only until the next is asked for. */
  reusing(): AsyncIterable<Uint8Array>
}

export function isReusable(src: unknown): src is ReusableSource {
  return typeof (src as Partial<ReusableSource> | undefined)?.reusing === 'function'
}

/**
 * `lent`, pieces each valid until the next is asked for (`size` bytes in
 * all, if known), as a ReusableSource: a consumer that knows the contract
 * (the local store: it copies what it keeps) takes the views, any other
 * gets a copy of each piece.
 */
export function lentSource(lent: AsyncIterable<Uint8Array>, size?: number): ReusableSource {
  return {
    size,
    reusing: () => lent,
    async *[Symbol.asyncIterator]() {
      for await (const piece of lent) yield Buffer.from(piece)
    },
  }
}
