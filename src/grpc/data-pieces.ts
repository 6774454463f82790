import type { Duplex } from 'node:stream'
import { finished } from 'node:stream/promises'

/** Bytes received and not yet taken before the stream is paused (its HTTP/2 window then stops the sender). */
const PIECES_AHEAD = 1 << 20

/**
 * An HTTP/2 stream's DATA pieces one by one, as HTTP/2 gave them (a
 * client's response, or a daemon's request). Not the stream's own async
 * iterator: its read() joins all that is buffered into one fresh buffer,
 * and a consumer slower than the link (a copy writing to disk) then took
 * pieces of up to the stream's 16 MiB window, each a new allocation (a
 * 1 GiB copy from a daemon: ~1 s of fromList plus ~1.4 s of GC). A stream
 * paused by its owner (grpc-js pauses a call's until it is read) is
 * resumed here. Ends and fails as that iterator does (finished()).
 */
export async function* dataPieces(stream: Duplex): AsyncGenerator<Buffer> {
  const queue: Buffer[] = []
  let next = 0
  let queued = 0
  let wake: (() => void) | undefined
  let ended = false
  let failure: unknown
  const onData = (piece: Buffer) => {
    queue.push(piece)
    queued += piece.length
    if (queued >= PIECES_AHEAD) stream.pause()
    wake?.()
  }
  stream.on('data', onData)
  if (stream.isPaused()) stream.resume()
  finished(stream, { writable: false }).then(
    () => void (ended = true),
    (e: unknown) => void (failure = e ?? new Error('the stream failed')),
  ).finally(() => wake?.())
  try {
    for (;;) {
      if (next < queue.length) {
        const piece = queue[next]!
        queue[next++] = EMPTY_PIECE
        if (next === queue.length) queue.length = next = 0
        queued -= piece.length
        if (queued < PIECES_AHEAD && stream.isPaused()) stream.resume()
        yield piece
        continue
      }
      if (failure !== undefined) throw failure
      if (ended) return
      await new Promise<void>((resolve) => (wake = resolve))
      wake = undefined
    }
  } finally {
    stream.off('data', onData)
  }
}
const EMPTY_PIECE = Buffer.alloc(0)
