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
  /** The bytes it yields, known before the first (it fails rather than yield another count). */
  readonly size: number
  /** The same bytes in reused buffers: each piece valid only until the next is asked for. */
  reusing(): AsyncIterable<Uint8Array>
}

export function isReusable(src: unknown): src is ReusableSource {
  return typeof (src as Partial<ReusableSource> | undefined)?.reusing === 'function'
}
