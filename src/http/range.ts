import type { Node } from '../castore/node.js'
import { type CastoreReader, renderNar } from '../store/nar/render.js'

/** Bytes `start` to `end` of a response body, both included (RFC 9110 14.1.1). */
export interface ByteRange {
  start: number
  end: number
}

/**
 * The one range a `Range` header asks of a body of `size` bytes:
 * `bytes=N-`, `bytes=N-M` or `bytes=-SUFFIX`. undefined for no header and
 * for what we answer with the whole body, as RFC 9110 lets a server do: a
 * header that does not parse, other units, several ranges (Nix only ever
 * asks one, to resume). 'unsatisfiable' when it starts past the end.
 */
export function byteRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  const m = header === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (!m || (m[1] === '' && m[2] === '')) return undefined
  if (m[1] === '') {
    const suffix = Number(m[2])
    return suffix === 0 ? 'unsatisfiable' : { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? Infinity : Number(m[2])
  if (end < start) return undefined
  if (start >= size) return 'unsatisfiable'
  return { start, end: Math.min(end, size - 1) }
}

/** Headers of a NAR response: the whole body (200) or one range of it (206). */
export function rangeHeaders(range: ByteRange | undefined, size: number): Record<string, string | number> {
  // Nix resumes a dropped download with `Range` only from a response that said it may.
  if (!range) return { 'Accept-Ranges': 'bytes', 'Content-Length': size }
  return { 'Accept-Ranges': 'bytes', 'Content-Length': range.end - range.start + 1, 'Content-Range': `bytes ${range.start}-${range.end}/${size}` }
}

/** The NAR's bytes in `range` (all without one): the render skips the blobs wholly before it and stops after it. */
export async function* narBytes(root: Node, store: CastoreReader, range: ByteRange | undefined, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  if (!range) return yield* renderNar(root, store, { signal })
  let left = range.end - range.start + 1
  for await (const chunk of renderNar(root, store, { signal, from: range.start })) {
    if (chunk.length >= left) {
      yield chunk.subarray(0, left)
      return
    }
    left -= chunk.length
    yield chunk
  }
}
