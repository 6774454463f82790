/**
 * Adapters from async functions to grpc-js handlers: decoding of raw
 * requests, backpressure on streamed responses, error -> status mapping,
 * and one log line per failed call.
 */
import { once } from 'node:events'
import type { Http2Session } from 'node:http2'
import type {
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  ServerReadableStream,
  ServerWritableStream,
} from '@grpc/grpc-js'
import { Status, StatusError, toStatus } from '../grpc/status.js'

export type Log = (line: string) => void

/** A digest field that must be set and have `len` bytes (INVALID_ARGUMENT otherwise). */
export function requireDigest(d: Uint8Array | undefined, len: number, what = 'digest'): Uint8Array {
  if (d === undefined) throw new StatusError(Status.INVALID_ARGUMENT, `${what} is not set`)
  if (d.length !== len) throw new StatusError(Status.INVALID_ARGUMENT, `${what} has ${d.length} bytes, want ${len}`)
  return d
}

/** The status to answer with; logged unless it is NOT_FOUND, the protocol's normal "absent", or CANCELLED: the client left. */
function fail(log: Log, method: string, e: unknown) {
  const s = toStatus(e)
  if (s.code !== Status.NOT_FOUND && s.code !== Status.CANCELLED) log(`${method} failed: ${Status[s.code]}: ${s.details}`)
  return s
}

/** Writes one message and waits until it left the queue (or the client went away). */
async function writeFlushed(call: ServerWritableStream<Buffer, unknown>, msg: unknown): Promise<void> {
  const ac = new AbortController()
  try {
    await Promise.race([new Promise<void>((resolve) => call.write(msg, () => resolve())), once(call, 'cancelled', { signal: ac.signal })])
  } finally {
    ac.abort()
  }
}

/**
 * `fn` gets a signal that is aborted when the client cancels the call or
 * goes away, so that long work (rendering a NAR) stops with it.
 */
export function unary<Req, Res>(
  method: string,
  log: Log,
  decode: (b: Uint8Array) => Req,
  fn: (req: Req, signal: AbortSignal) => Promise<Res>,
): handleUnaryCall<Buffer, Res> {
  return (call, callback) => {
    const ac = new AbortController()
    call.once('cancelled', () => ac.abort(new StatusError(Status.CANCELLED, 'the client cancelled the call')))
    Promise.resolve()
      .then(() => fn(decode(call.request), ac.signal))
      .then(
        (res) => callback(null, res),
        (e) => callback(fail(log, method, e)),
      )
  }
}

export function serverStream<Req, Res>(
  method: string,
  log: Log,
  decode: (b: Uint8Array) => Req,
  fn: (req: Req) => AsyncIterable<Res>,
): handleServerStreamingCall<Buffer, Res> {
  return (call: ServerWritableStream<Buffer, Res>) => {
    ;(async () => {
      const it = fn(decode(call.request))[Symbol.asyncIterator]()
      try {
        for (;;) {
          if (call.cancelled) return
          const r = await it.next()
          if (r.done) break
          // Wait until each message is handed to HTTP/2: grpc-js would queue 16
          // messages (16 MiB of blob data) per stream before saying stop.
          await writeFlushed(call as ServerWritableStream<Buffer, unknown>, r.value)
        }
        call.end()
      } finally {
        // Closes files (and upstream calls) when the client went away early.
        await it.return?.()
      }
    })().catch((e) => {
      if (!call.cancelled) call.emit('error', fail(log, method, e))
    })
  }
}

/**
 * Aborts when the client cancels the call (or it is otherwise torn down),
 * so a handler can stop work it would throw away.
 */
export function cancelSignal(call: { cancelled: boolean; once(e: 'cancelled', f: () => void): unknown }): AbortSignal {
  const ac = new AbortController()
  if (call.cancelled) ac.abort()
  else call.once('cancelled', () => ac.abort())
  return ac.signal
}

/** What a cancelled client stream's messages throw: nothing it sent may be committed. */
export const cancelledError = () => new StatusError(Status.CANCELLED, 'the client cancelled the call')

/**
 * Resolves once the client answered a PING sent now: HTTP/2 frames are
 * ordered on the connection, so an RST_STREAM the client sent before it
 * saw our PING has been processed by then. Best effort: if grpc-js hides
 * the session (a future version), one I/O turn instead.
 */
async function pingBarrier(call: object): Promise<void> {
  const session = (call as { call?: { nextCall?: { stream?: { session?: Http2Session } } } }).call?.nextCall?.stream?.session
  await new Promise<void>((resolve) => {
    if (!session || session.destroyed || !session.ping(() => resolve())) setImmediate(resolve)
  })
}

export function clientStream<Req, Res>(
  method: string,
  log: Log,
  decode: (b: Uint8Array) => Req,
  fn: (reqs: AsyncIterable<Req>, signal: AbortSignal) => Promise<Res>,
): handleClientStreamingCall<Buffer, Res> {
  return (call: ServerReadableStream<Buffer, Res>, callback) => {
    const signal = cancelSignal(call)
    async function* messages(): AsyncGenerator<Req> {
      // Not destroying the call when the loop ends: grpc-js ends it itself.
      for await (const raw of call.iterator({ destroyOnReturn: false })) {
        if (signal.aborted) break
        yield decode(raw as Buffer)
      }
      // A cancelled call is destroyed without an error, which ends the loop
      // like the client's half-close would. And a Node client that cancels
      // half-closes first, its RST_STREAM following a write later: give that
      // one I/O turn to arrive before calling the stream complete.
      if (call.readableEnded && !signal.aborted) await pingBarrier(call)
      if (signal.aborted || !call.readableEnded) throw cancelledError()
    }
    Promise.resolve()
      .then(() => fn(messages(), signal))
      .then(
        (res) => callback(null, res),
        (e) => {
          // Nobody hears the answer of a cancelled call: no log line either.
          if (signal.aborted) return
          callback(fail(log, method, e))
          // Stop reading what the client still sends.
          call.destroy()
        },
      )
  }
}
