/**
 * Adapters from async functions to grpc-js handlers: decoding of raw
 * requests, backpressure on streamed responses, error -> status mapping,
 * and one log line per failed call.
 */
import { once } from 'node:events'
import http2, { type ServerHttp2Stream } from 'node:http2'
import {
  Metadata,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerReadableStream,
  type ServerWritableStream,
} from '@grpc/grpc-js'
import { requireDigestLength } from '../castore/digest.js'
import { dataPieces } from '../grpc/data-pieces.js'
import { frameMessages } from '../grpc/definitions.js'
import { Status, StatusError, toStatus } from '../grpc/status.js'
import { type Transfers, UNLIMITED, callDeadline, withinIdle } from './transfers.js'

export type Log = (line: string) => void

/** A digest field that must be set and have `len` bytes (INVALID_ARGUMENT otherwise). */
export function requireDigest(d: Uint8Array | undefined, len: number, what = 'digest'): Uint8Array {
  if (d === undefined) throw new StatusError(Status.INVALID_ARGUMENT, `${what} is not set`)
  return requireDigestLength(d, len, what)
}

/** The status to answer with; logged unless it is NOT_FOUND, the protocol's normal "absent", or CANCELLED: the client left. */
function fail(log: Log, method: string, e: unknown) {
  const s = toStatus(e)
  if (s.code !== Status.NOT_FOUND && s.code !== Status.CANCELLED) log(`${method} failed: ${Status[s.code]}: ${s.details}`)
  return s
}

/**
 * Bytes of a server stream's messages written but not yet handed to
 * HTTP/2. A few messages in flight spare each one a wait for the event
 * loop's next turn (a blob Read of 256 KiB pieces went one piece per
 * turn); the bound keeps what one stream holds small: grpc-js would queue
 * 16 messages (16 MiB of blob data) before saying stop.
 */
const UNFLUSHED_BYTES = 1 << 20
/** What a message that is not bytes (a Directory, a PathInfo) counts for: small ones, a few in flight. */
const OBJECT_MESSAGE_BYTES = 64 << 10

/**
 * How a stream's messages that are bytes (a blob Read's data) may skip
 * grpc-js: `head(size)` gives the gRPC prefix and protobuf head of a
 * message of `size` bytes of data. grpc-js would copy each message twice
 * (our serializer's encoding, then its framed copy, a fresh 1 MiB buffer
 * each: garbage and page faults, a third of a daemon's CPU serving a large
 * blob); written as its head and a view of the data onto the call's HTTP/2
 * stream, it is not copied at all. The wire is the same.
 */
export interface DirectBytes {
  head(size: number): Uint8Array
}

/**
 * Messages of a server stream already encoded and framed as gRPC frames
 * them (a 5-byte prefix before each), in one buffer: written onto the
 * call's HTTP/2 stream in one write, which HTTP/2 packs into full DATA
 * frames. Written a message at a time (grpc-js waits for each write before
 * the next), a batch of small blobs went out one DATA frame per blob, and
 * the client took an event per frame. `release` is called once nothing
 * reads `framed` any more (HTTP/2 took it, or the stream failed): the
 * buffer may then be used again.
 */
export class FramedAnswer {
  constructor(
    readonly framed: Uint8Array,
    readonly release: () => void = () => {},
  ) {}

  /** `messages` (each encoded) framed into one fresh buffer. */
  static of(messages: readonly Uint8Array[]): FramedAnswer {
    return new FramedAnswer(frameMessages(messages))
  }
}

/** A server stream's writes, at most UNFLUSHED_BYTES of them in flight. */
class FlushWindow {
  private unflushed = 0
  private room: (() => void) | undefined
  private readonly cancelled: Promise<void>
  /** The HTTP/2 stream byte messages go to once the response headers are out (direct); null where grpc-js writes them. */
  private h2: ServerHttp2Stream | null | undefined

  constructor(
    private readonly call: ServerWritableStream<Buffer, unknown>,
    private readonly direct?: DirectBytes,
  ) {
    this.cancelled = new Promise<void>((resolve) => (call.cancelled ? resolve() : call.once('cancelled', resolve)))
    this.cancelled.then(() => this.room?.())
  }

  /**
   * Writes `msg`; waits while too much is in flight (or until the client
   * goes away, or `idleMs` pass). `lent`: `msg` is a view of a buffer its
   * source reuses, so wait until grpc-js has copied it out (serialized
   * into its own frame), or HTTP/2 has sent it (direct): the write's callback.
   */
  async write(msg: unknown, idleMs: number, lent = false): Promise<void> {
    this.send(msg)
    await this.until(lent ? 0 : UNFLUSHED_BYTES, idleMs)
  }

  /** Writes `msg` without waiting: for messages already in memory, followed by drained(). */
  send(msg: unknown): void {
    if (msg instanceof FramedAnswer) return this.sendFramed(msg)
    const size = msg instanceof Uint8Array ? msg.length : OBJECT_MESSAGE_BYTES
    this.unflushed += size
    const sent = () => {
      this.unflushed -= size
      this.room?.()
    }
    const h2 = msg instanceof Uint8Array && this.direct ? this.directStream() : null
    if (!h2) return void this.call.write(msg, sent)
    // grpc-js ended the stream under us (its deadline, a status): nothing more goes out, as its own write would drop it.
    if (h2.writableEnded || h2.destroyed) return sent()
    if (size === 0) return void h2.write(this.direct!.head(0), sent)
    h2.write(this.direct!.head(size))
    h2.write(msg, sent)
  }

  /**
   * Framed messages in one write; where the HTTP/2 stream cannot be found,
   * each message through grpc-js (whose serializer must then take encoded
   * bytes as they are), the buffer released after the last one's write.
   */
  private sendFramed(a: FramedAnswer): void {
    const { framed } = a
    this.unflushed += framed.length
    const sent = () => {
      this.unflushed -= framed.length
      a.release()
      this.room?.()
    }
    const h2 = this.directStream()
    if (h2) {
      if (h2.writableEnded || h2.destroyed) return sent()
      return void h2.write(framed, sent)
    }
    const view = Buffer.from(framed.buffer, framed.byteOffset, framed.byteLength)
    for (let at = 0; at < view.length; ) {
      const end = at + 5 + view.readUInt32BE(at + 1)
      this.call.write(view.subarray(at + 5, end), end === view.length ? sent : undefined)
      at = end
    }
  }

  /**
   * The call's HTTP/2 stream, its response headers sent through grpc-js
   * (which then sends the status as trailers after what is written here,
   * in order); null, and grpc-js writes every message, where this
   * grpc-js's stream cannot be found or its headers did not go out.
   * Asked at the first message, so a call that fails before any still
   * answers with its status alone.
   */
  private directStream(): ServerHttp2Stream | null {
    if (this.h2 !== undefined) return this.h2
    const h2 = http2StreamOf(this.call)
    if (h2 && !h2.destroyed && !h2.headersSent) this.call.sendMetadata(new Metadata())
    this.h2 = h2 && !h2.destroyed && h2.headersSent ? h2 : null
    // grpc-js hears one error of the stream; one of our writes may fail after it (a reset): that must not go unhandled.
    this.h2?.on('error', () => {})
    return this.h2
  }

  /** Waits until everything written is handed to HTTP/2: a status sent now comes after it. */
  drained(idleMs: number): Promise<void> {
    return this.until(0, idleMs)
  }

  private async until(limit: number, idleMs: number): Promise<void> {
    while (this.unflushed > limit && !this.call.cancelled) {
      await withinIdle(new Promise<void>((resolve) => (this.room = resolve)), idleMs, 'the client read nothing')
    }
    this.room = undefined
  }
}

/** What we read of grpc-js's base call (BaseServerInterceptingCall): its HTTP/2 stream and the request's grpc-encoding. */
interface BaseCall {
  stream?: ServerHttp2Stream
  incomingEncoding?: string
}

/** grpc-js's base call under a call, if this grpc-js version still has it where we look. */
function baseCallOf(call: object): BaseCall | undefined {
  // With server interceptors, grpc-js wraps its base call once more.
  const inner = (call as { call?: BaseCall & { nextCall?: BaseCall } }).call
  return inner?.stream ? inner : inner?.nextCall
}

/** grpc-js's HTTP/2 stream under a call, if this grpc-js version still has it where we look. */
export function http2StreamOf(call: object): ServerHttp2Stream | undefined {
  return baseCallOf(call)?.stream
}

/**
 * A client stream's HTTP/2 stream, taken from grpc-js to be read
 * directly (DirectRequests): grpc-js's own reader of its DATA is removed,
 * so it decodes none of it (it still sends the answer and the status).
 * Undefined, and grpc-js reads the call, where this grpc-js's stream cannot
 * be found, its reader is not the one we know (one listener, the stream
 * paused until the handler reads), or the request is compressed.
 */
function takeRequestStream(call: object): ServerHttp2Stream | undefined {
  const base = baseCallOf(call)
  const h2 = base?.stream
  if (!h2 || h2.destroyed || base.incomingEncoding !== 'identity' || h2.listenerCount('data') !== 1 || !h2.isPaused()) return undefined
  h2.removeAllListeners('data')
  return h2
}

/**
 * Resets a call's HTTP/2 stream: what is queued for a client that does not
 * read is dropped at once (an error status would queue behind it).
 */
function resetStream(call: ServerWritableStream<Buffer, unknown> | ServerReadableStream<Buffer, unknown>): void {
  const h2 = http2StreamOf(call)
  if (h2 && !h2.destroyed) h2.close(http2.constants.NGHTTP2_CANCEL)
  else call.destroy()
}

/**
 * Every handler (unary, server and client streams) gets a signal that is
 * aborted when the client cancels the call or goes away: it passes it to
 * the store calls it makes (CallOptions), so that their work (a NAR
 * render, a blob read and its file) stops with the call.
 */
export function unary<Req, Res>(
  method: string,
  log: Log,
  decode: (b: Uint8Array) => Req,
  fn: (req: Req, signal: AbortSignal, call: object) => Promise<Res>,
): handleUnaryCall<Buffer, Res> {
  return (call, callback) => {
    const ac = new AbortController()
    call.once('cancelled', () => ac.abort(new StatusError(Status.CANCELLED, 'the client cancelled the call')))
    Promise.resolve()
      .then(() => fn(decode(call.request), ac.signal, call))
      .then(
        (res) => callback(null, res),
        (e) => callback(fail(log, method, e)),
      )
  }
}

/**
 * A heavy server stream holds one of `transfers`' slots while it runs.
 * `lent`: `fn`'s messages are views its source reuses once the next is
 * asked for; each is then written out before the next is asked for.
 * `fn` may answer with an array: messages it already holds, none of them
 * lent (a small blob read whole), written at once, without a step per message;
 * or with them framed in one buffer (FramedAnswer), written in one go.
 * `direct`: its messages are bytes, written without grpc-js (DirectBytes).
 */
export function serverStream<Req, Res>(
  method: string,
  log: Log,
  decode: (b: Uint8Array) => Req,
  fn: (req: Req, signal: AbortSignal, call: object) => AsyncIterable<Res | FramedAnswer> | Res[] | FramedAnswer,
  transfers: Transfers = UNLIMITED,
  lent = false,
  direct?: DirectBytes,
): handleServerStreamingCall<Buffer, Res> {
  return (call: ServerWritableStream<Buffer, Res>) => {
    const signal = cancelSignal(call)
    const window = new FlushWindow(call as ServerWritableStream<Buffer, unknown>, direct)
    const idleMs = transfers.limits.callIdleMs
    let release: (() => void) | undefined
    ;(async () => {
      const req = decode(call.request)
      release = await transfers.acquire(signal)
      // Counted from the slot: time spent waiting for it is not the client's doing.
      const deadline = callDeadline(transfers.limits)
      const out = fn(req, signal, call)
      if (Array.isArray(out) || out instanceof FramedAnswer) {
        if (call.cancelled) return out instanceof FramedAnswer ? out.release() : undefined
        for (const msg of Array.isArray(out) ? out : [out]) window.send(msg)
        // The status goes with the data; the slot is held until HTTP/2 has taken the data, as for a stream.
        call.end()
        await window.drained(idleMs)
        return
      }
      const it = out[Symbol.asyncIterator]()
      try {
        for (;;) {
          if (call.cancelled) return
          const r = await it.next()
          if (r.done) break
          deadline.check()
          await window.write(r.value, idleMs, lent)
        }
        call.end()
      } finally {
        // Closes files (and upstream calls) when the client went away early.
        await it.return?.()
      }
    })()
      .catch(async (e) => {
        if (call.cancelled) return
        const s = fail(log, method, e)
        // The messages before the failure go out first, then the status (a client that reads nothing gets the reset).
        const drained = s.code !== Status.DEADLINE_EXCEEDED && (await window.drained(idleMs).then(() => true, () => false))
        if (call.cancelled) return
        if (drained) call.emit('error', s)
        else resetStream(call as ServerWritableStream<Buffer, unknown>)
      })
      .finally(() => release?.())
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
  const session = http2StreamOf(call)?.session
  await new Promise<void>((resolve) => {
    if (!session || session.destroyed || !session.ping(() => resolve())) setImmediate(resolve)
  })
}

/**
 * How a client stream's requests may skip grpc-js (a blob Put's data):
 * the call's HTTP/2 DATA pieces, as they come, turned into what the
 * handler reads, lent (each valid until the next is asked for). It must
 * check each message as grpc-js and the decoder would (size, protobuf)
 * and fail on a stream that ends inside one.
 */
export type DirectRequests<Req> = (pieces: AsyncIterable<Buffer>) => AsyncIterable<Req>

/**
 * A heavy client stream holds one of `transfers`' slots while it runs.
 * `direct`: its requests are read off the HTTP/2 stream (DirectRequests)
 * where grpc-js lets us; `fn` is told so by `lent`.
 */
export function clientStream<Req, Res>(
  method: string,
  log: Log,
  decode: (b: Uint8Array) => Req,
  fn: (reqs: AsyncIterable<Req>, signal: AbortSignal, call: object, lent: boolean) => Promise<Res>,
  transfers: Transfers = UNLIMITED,
  direct?: DirectRequests<Req>,
): handleClientStreamingCall<Buffer, Res> {
  return (call: ServerReadableStream<Buffer, Res>, callback) => {
    const signal = cancelSignal(call)
    const h2 = direct && takeRequestStream(call)
    async function* messages(): AsyncGenerator<Req> {
      const deadline = callDeadline(transfers.limits)
      /** What the client sends, each step within the idle timeout and the call's deadline: grpc-js's messages, or (direct) DATA pieces. */
      async function* paced<T>(it: AsyncIterator<T>): AsyncGenerator<T> {
        try {
          for (;;) {
            const r = await withinIdle(it.next(), transfers.limits.callIdleMs, 'the client sent nothing')
            if (r.done) return
            deadline.check()
            yield r.value
          }
        } finally {
          // The direct reader stops listening to the stream. Not waited for: after a timeout, `it` still waits for the client (its return() runs once the call is torn down).
          it.return?.()?.catch(() => {})
        }
      }
      if (h2) {
        try {
          for await (const m of direct!(paced(dataPieces(h2)[Symbol.asyncIterator]()))) {
            if (signal.aborted) break
            yield m
          }
        } catch (e) {
          // Read directly, a reset stream fails the read (grpc-js ends its messages instead): the client cancelled.
          if (!h2.readableEnded && (h2.destroyed || h2.closed)) throw cancelledError()
          throw e
        }
      } else {
        // Not destroying the call when the loop ends: grpc-js ends it itself.
        for await (const m of paced(call.iterator({ destroyOnReturn: false }))) {
          if (signal.aborted) break
          yield decode(m as Buffer)
        }
      }
      // A cancelled call is destroyed without an error, which ends the loop
      // like the client's half-close would. And a Node client that cancels
      // half-closes first, its RST_STREAM following a write later: give that
      // one I/O turn to arrive before calling the stream complete.
      const ended = () => (h2 ?? call).readableEnded
      if (ended() && !signal.aborted) await pingBarrier(call)
      if (signal.aborted || !ended()) throw cancelledError()
    }
    let release: (() => void) | undefined
    Promise.resolve()
      .then(async () => {
        release = await transfers.acquire(signal)
        return fn(messages(), signal, call, h2 !== undefined)
      })
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
      .finally(() => release?.())
  }
}
