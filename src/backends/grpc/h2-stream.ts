import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { dataPieces } from '../../grpc/data-pieces.js'
import { BLOB_CHUNK_BYTES, frameMessages } from '../../grpc/definitions.js'
import { Status } from '../../grpc/status.js'

/**
 * Server-streaming gRPC calls straight on node:http2, for the calls a tree
 * read makes by the thousand (one blob Read per file). grpc-js spends
 * about a millisecond of CPU setting up each call (resolver, balancer,
 * retry and interceptor layers); here a call is one HTTP/2 request, and
 * a message that arrives in one piece is passed on as a view, not copied.
 * The wire is the same: HTTP/2, `application/grpc`, 5-byte message prefix,
 * status in trailers. Failures are grpc-js-shaped (code, details,
 * metadata) so that fromStatus() maps them as it maps grpc-js's.
 */

/** Receive window per stream and, times the streams, per connection (as grpc-js is configured in rpc.ts). */
const STREAM_WINDOW = 16 * 1024 * 1024
const SESSION_WINDOW = 64 * 1024 * 1024

/** How to reach a daemon: TLS (trusting `ca`, else Node's built-in CA list) and the bearer token sent with every call. */
export interface Connection {
  tls?: { ca?: Buffer }
  token?: string
}

export interface CallFailure extends Error {
  code: Status
  details: string
  metadata: Trailers
}

/** A failed call as grpc-js's calls fail (code, details, metadata), for fromStatus(). */
export function callFailure(code: Status, details: string, metadata = new Trailers()): CallFailure {
  return Object.assign(new Error(`${code} ${Status[code]}: ${details}`), { code, details, metadata })
}

/**
 * A failed call's custom trailers, read as grpc-js's Metadata is read
 * (get(key): its values): all fromStatus() asks of them. Not grpc-js's own
 * class, so that a CLI whose calls are all lean never loads grpc-js.
 */
class Trailers {
  constructor(private readonly headers: IncomingHttpHeaders = {}) {}

  get(key: string): string[] {
    const v = key.startsWith(':') || key.startsWith('grpc-') || key.endsWith('-bin') ? undefined : this.headers[key]
    return v === undefined ? [] : Array.isArray(v) ? v : [v]
  }
}

export class H2Streams {
  private session: ClientHttp2Session | undefined
  /** Calls in flight: while there are any, the connection keeps the process alive. */
  private active = 0

  constructor(
    /** grpc-js target syntax: `unix:/path` or `host:port`. */
    private readonly target: string,
    private readonly maxMessageBytes: number,
    private readonly connection: Connection = {},
  ) {}

  private connect(): ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session
    const unix = this.target.startsWith('unix:') ? this.target.slice('unix:'.length) : undefined
    const tls = unix ? undefined : this.connection.tls
    const session = http2.connect(unix ? 'http://localhost' : `${tls ? 'https' : 'http'}://${this.target}`, {
      ...(unix ? { createConnection: () => net.connect(unix) } : {}),
      ...(tls?.ca ? { ca: tls.ca } : {}),
      // No SNI for an address (RFC 6066; Node warns): the certificate is still checked against it.
      ...(tls && net.isIP(new URL(`https://${this.target}`).hostname.replace(/^\[|\]$/g, '')) ? { servername: '' } : {}),
      settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
      // As grpc-js's own client: Node counts every queued write against 10 MB by default and resets a stream with
      // ENHANCE_YOUR_CALM past it, which several Puts of large blobs, each with its send buffers queued, reached.
      // What a call holds is bounded by its SendPool; the daemon's flow control paces the rest.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
    })
    session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW))
    session.once('remoteSettings', () => greeted.add(session))
    // An idle connection must not keep a CLI alive; calls in flight keep it referenced (see call()).
    session.unref()
    // Errors reach the streams in flight; a connection that goes is replaced at the next call.
    session.on('error', () => {})
    session.once('goaway', () => this.session === session && (this.session = undefined))
    session.once('close', () => this.session === session && (this.session = undefined))
    this.session = session
    return session
  }

  /**
   * Sends the request of a call (its messages, then the half-close), or
   * with `request` undefined leaves the sending to the caller (send());
   * `finish` must be called once it ends, however it ends.
   */
  private start(path: string, request: Request | undefined, signal?: AbortSignal): Call {
    signal?.throwIfAborted()
    let stream: ClientHttp2Stream
    let session: ClientHttp2Session
    try {
      session = this.connect()
      const token = this.connection.token
      stream = session.request(
        { ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers', ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
        { signal },
      )
    } catch (e) {
      throw callFailure(Status.UNAVAILABLE, `Last error: ${(e as Error).message}`)
    }
    // Its errors (a reset, an abort) end the call's reading; none may go unhandled when nobody reads.
    stream.on('error', () => {})
    if (request !== undefined) stream.end(request instanceof FramedRequests ? request.bytes : frameMessages(request instanceof Uint8Array ? [request] : request))
    if (this.active++ === 0) session.ref()
    const call: Call = { stream, session, messages: new MessageReader(this.maxMessageBytes), finish: () => {} }
    stream.once('response', (h) => (call.headers = h))
    stream.once('trailers', (t) => (call.trailers = t))
    let finished = false
    call.finish = (ok) => {
      if (finished) return
      finished = true
      if (!ok && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL)
      if (--this.active === 0) session.unref()
    }
    return call
  }

  /**
   * Calls `path` with one request message and yields the response
   * messages as they arrive (raw protobuf bytes); fails with a CallFailure
   * for a non-OK status. An aborted `signal` cancels the call; so does
   * returning early. `ring`: messages that span DATA pieces are assembled
   * in its reused buffers (see MessageRing) instead of fresh ones.
   */
  async *call(path: string, request: Request, signal?: AbortSignal, ring?: MessageRing): AsyncGenerator<Uint8Array> {
    for (let attempt = 1; ; attempt++) {
      const call = this.start(path, request, signal)
      if (ring) call.messages.ring = ring
      let ok = false
      try {
        try {
          // A refused stream yielded nothing (no response came), so it may be sent again.
          const got: Uint8Array[] = []
          const take = (b: Buffer, start: number, end: number) => void got.push(b.subarray(start, end))
          for await (const piece of dataPieces(call.stream)) {
            call.messages.push(piece, take)
            yield* got
            got.length = 0
          }
        } catch (e) {
          if (attempt < ATTEMPTS && refusedUnanswered(call, signal)) {
            await sleep(RETRY_MS * attempt)
            continue
          }
          throw streamFailure(e, signal)
        }
        // Closed without an error, unanswered, on a connection the server never spoke on.
        if (attempt < ATTEMPTS && refusedUnanswered(call, signal)) {
          await sleep(RETRY_MS * attempt)
          continue
        }
        checkEnd(call, signal)
        ok = true
        return
      } finally {
        call.finish(ok)
      }
    }
  }

  /**
   * The messages of a call that answers with few bytes (a small blob),
   * gathered without an async step per piece; `undefined` (and the call
   * cancelled) once they pass `maxBytes`.
   */
  async collect(path: string, request: Request, maxBytes: number, signal?: AbortSignal): Promise<Uint8Array[] | undefined> {
    const got: Uint8Array[] = []
    let bytes = 0
    const whole = await this.each(path, request, (b, start, end) => {
      got.push(b.subarray(start, end))
      bytes += end - start
      return bytes <= maxBytes
    }, signal)
    return whole ? got : undefined
  }

  /**
   * Hands each response message to `onMessage` as it arrives, in the
   * stream's 'data' events (no async step per message: a batch of small
   * blobs), as where it lies (OnMessage): no view is made of it here.
   * Resolves true once the call ended OK, false (the call cancelled) once
   * `onMessage` returned false; rejects as call() fails, or with what
   * `onMessage` threw.
   */
  each(path: string, request: Request, onMessage: OnMessage, signal?: AbortSignal, attempt = 1): Promise<boolean> {
    const call = this.start(path, request, signal)
    return this.answer(call, onMessage, signal, () => (attempt < ATTEMPTS ? sleep(RETRY_MS * attempt).then(() => this.each(path, request, onMessage, signal, attempt + 1)) : undefined))
  }

  /**
   * The response of a started call, handed to `onMessage` as in each().
   * `again`: for a call the daemon refused unread, the same call sent
   * again (undefined: the refusal is the failure).
   */
  private answer(call: Call, onMessage: OnMessage, signal?: AbortSignal, again?: () => Promise<boolean> | undefined): Promise<boolean> {
    const { stream } = call
    return new Promise<boolean>((resolve, reject) => {
      let settled = false
      const settle = (ok: boolean, f: () => void) => {
        settled = true
        stream.removeAllListeners('data')
        call.finish(ok)
        f()
      }
      stream.on('data', (piece: Buffer) => {
        try {
          if (!call.messages.push(piece, onMessage)) return settle(false, () => resolve(false))
        } catch (e) {
          return settle(false, () => reject(e))
        }
      })
      stream.once('error', (e) => {
        if (settled) return
        const retry = refusedUnanswered(call, signal) ? again?.() : undefined
        if (retry) settle(false, () => resolve(retry))
        else settle(false, () => reject(streamFailure(e, signal)))
      })
      stream.once('close', () => {
        if (settled) return
        // Closed without an error, unanswered, on a connection the server never spoke on.
        const retry = refusedUnanswered(call, signal) ? again?.() : undefined
        if (retry) return settle(false, () => resolve(retry))
        try {
          checkEnd(call, signal)
        } catch (e) {
          return settle(false, () => reject(e))
        }
        settle(true, () => resolve(true))
      })
    })
  }

  /**
   * A client stream: each of `messages`, given as the pieces it is made of
   * (a field's head, then a view of its data), is copied once into a framed
   * buffer and written. The buffers come from a pool of SEND_BUFFERS
   * reused as HTTP/2 has sent them, so up to that many messages are in
   * flight while the next is read from the source, and a large upload
   * makes no garbage per message. Resolves with the answer's messages (at
   * most `maxBytes`; undefined beyond) once the call ended OK; an answer
   * that comes early (an error status) stops the sending.
   *
   * A failing source (or an aborted `signal`) resets the stream after a
   * message no server accepts, and rethrows: the daemon sees a failed or
   * cancelled call, never a complete one that it would store. A refused
   * stream is not sent again here: its source may not be read twice.
   */
  async send(path: string, messages: AsyncIterable<readonly Uint8Array[]>, maxBytes: number, signal?: AbortSignal): Promise<Uint8Array[] | undefined> {
    const call = this.start(path, undefined, signal)
    const { stream } = call
    const got: Uint8Array[] = []
    let bytes = 0
    const answered = this.answer(call, (b, start, end) => {
      got.push(b.subarray(start, end))
      bytes += end - start
      return bytes <= maxBytes
    }, signal)
    let over = false
    const ended = answered.then(
      () => void (over = true),
      () => void (over = true),
    )
    const pool = new SendPool(this.maxMessageBytes)
    try {
      for await (const pieces of messages) {
        if (over) break
        const framed = await pool.frame(pieces, ended)
        if (!framed || over) break
        stream.write(framed, () => pool.release(framed))
      }
    } catch (e) {
      // Node may half-close the stream before its reset goes out: ABORT_MESSAGE first, so no daemon takes the cut-off stream for a whole one.
      if (!over && stream.writable) await new Promise<void>((resolve) => stream.write(frameMessages([ABORT_MESSAGE]), () => resolve()))
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL)
      await ended
      throw e
    }
    if (!over) stream.end()
    return (await answered) ? got : undefined
  }

  close(): void {
    this.session?.close()
    this.session = undefined
  }
}

/**
 * A message no server accepts (a length prefix cut short), sent before a
 * client stream is cancelled: Node's HTTP/2 may end the stream before it
 * resets it, and a daemon must not take a cut-off stream for a whole one.
 */
const ABORT_MESSAGE = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])

/**
 * The messages of a client stream already framed by the caller (a batch
 * written straight into a buffer it reuses): sent as they are. The caller
 * may reuse the bytes once the call was answered OK (the server read them
 * all), not before: a call the server refused unread is sent again.
 */
export class FramedRequests {
  constructor(readonly bytes: Uint8Array) {}
}

/** A call's request: one message, or the messages of a client stream already in memory (a batch), possibly framed. */
type Request = Uint8Array | readonly Uint8Array[] | FramedRequests

/** Messages of a client stream in flight at once (send()), each in a buffer that holds a blob chunk framed. */
const SEND_BUFFERS = 4
const SEND_BUFFER_BYTES = 5 + 16 + BLOB_CHUNK_BYTES

/** Framed buffers for send(), reused once written out. */
class SendPool {
  private readonly free: Buffer[] = []
  private made = 0
  private wake: (() => void) | undefined

  constructor(private readonly maxMessageBytes: number) {}

  /**
   * `pieces` framed as one message in a pooled buffer; waits while all
   * SEND_BUFFERS are in flight. Undefined if `ended` settles first.
   */
  async frame(pieces: readonly Uint8Array[], ended: Promise<void>): Promise<Buffer | undefined> {
    let size = 0
    for (const p of pieces) size += p.length
    if (size > this.maxMessageBytes) throw callFailure(Status.RESOURCE_EXHAUSTED, `Sent message larger than max (${size} vs. ${this.maxMessageBytes})`)
    let buf: Buffer | undefined
    for (;;) {
      buf = this.take(5 + size)
      if (buf) break
      let stop = false
      await Promise.race([new Promise<void>((resolve) => (this.wake = resolve)), ended.then(() => void (stop = true))])
      if (stop) return undefined
    }
    buf[0] = 0
    buf.writeUInt32BE(size, 1)
    let at = 5
    for (const p of pieces) {
      buf.set(p, at)
      at += p.length
    }
    return buf.subarray(0, at)
  }

  /** A written buffer (a view of a pooled one) comes back. */
  release(framed: Buffer): void {
    if (framed.buffer.byteLength === SEND_BUFFER_BYTES) this.free.push(Buffer.from(framed.buffer))
    this.wake?.()
  }

  private take(bytes: number): Buffer | undefined {
    // A message larger than a pooled buffer (none a blob Put sends) gets one of its own.
    if (bytes > SEND_BUFFER_BYTES) return Buffer.alloc(bytes)
    const b = this.free.pop()
    if (b) return b
    if (this.made >= SEND_BUFFERS) return undefined
    this.made++
    return Buffer.allocUnsafeSlow(SEND_BUFFER_BYTES)
  }
}

interface Call {
  stream: ClientHttp2Stream
  session: ClientHttp2Session
  messages: MessageReader
  headers?: IncomingHttpHeaders
  trailers?: IncomingHttpHeaders
  /** Frees the call's hold on the connection; cancels it unless it ended well. */
  finish(ok: boolean): void
}

/**
 * Sends of a call the daemon refused unread: a stream reset with
 * REFUSED_STREAM before any response, which HTTP/2 (RFC 9113 §8.7) says
 * was not processed. It happens when a connection the daemon closed as
 * idle (its GOAWAY in flight) takes a new call; the next send gets a new
 * connection. So were the calls of a connection closed before the server's
 * SETTINGS came (greeted).
 */
const ATTEMPTS = 3

function refusedUnanswered(call: Call, signal?: AbortSignal): boolean {
  return !signal?.aborted && call.headers === undefined && (call.stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM || !greeted.has(call.session))
}

/**
 * Connections whose server sent its SETTINGS, as every HTTP/2 server does
 * first. One closed before that (a daemon at its --max-connections closes
 * new ones as they arrive) carried no answer: its calls may go again.
 */
const greeted = new WeakSet<ClientHttp2Session>()
/** Pause before a refused call goes again, times its attempt: a daemon at its limits gets a moment. */
const RETRY_MS = 50

/** The connection failed or the stream was reset under the call. */
function streamFailure(e: unknown, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason
  const err = e as NodeJS.ErrnoException
  // A connection that failed (refused, a certificate not trusted) cancels the streams waiting for it: its reason is the cause.
  const why = err.code === 'ERR_HTTP2_STREAM_CANCEL' && err.cause instanceof Error ? err.cause.message : err.message
  // REFUSED_STREAM: not processed, so the daemon is unavailable to it, as gRPC maps it.
  const internal = err.code === 'ERR_HTTP2_STREAM_ERROR' && !/REFUSED_STREAM/.test(err.message)
  return callFailure(internal ? Status.INTERNAL : Status.UNAVAILABLE, `Last error: ${why}`)
}

/** After the last DATA: the call's status, thrown unless OK. */
function checkEnd(call: Call, signal?: AbortSignal): void {
  signal?.throwIfAborted()
  call.messages.end()
  // No answer at all: the connection went (a daemon at its --max-connections closes new ones unanswered).
  if (call.headers === undefined && call.trailers === undefined) throw callFailure(Status.UNAVAILABLE, 'the connection closed before an answer came')
  // A trailers-only answer (an error before any message) carries the status in the headers.
  const status = call.trailers ?? call.headers
  const code = Number(status?.['grpc-status'] ?? (Number(call.headers?.[':status']) === 200 ? NaN : Status.UNKNOWN))
  if (!Number.isInteger(code)) throw callFailure(Status.INTERNAL, 'the stream ended without a status')
  if (code !== Status.OK) throw callFailure(code, decodeMessage(status?.['grpc-message']), new Trailers(status))
}

/** grpc-message is percent-encoded (gRPC over HTTP/2). */
function decodeMessage(v: string | string[] | undefined): string {
  const s = Array.isArray(v) ? v.join(',') : (v ?? '')
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

/**
 * A response message, as bytes `start` to `end` of `b`: of the DATA piece
 * it arrived in when it lies whole in one, else of a buffer of its own.
 * `b` is not reused: a view of it may be kept. Returns false to stop the
 * call.
 */
export type OnMessage = (b: Buffer, start: number, end: number) => boolean | void

/**
 * Splits a stream of DATA pieces into gRPC messages (1 flag byte, 4 length
 * bytes, the message), each handed to a callback where it lies: a message
 * inside one piece is not copied, nor is a view made of it (a batch of
 * small blobs is one piece's worth of messages; its reader parses them in
 * place, no generator per piece nor view per message); one that spans
 * pieces is copied once into a buffer of its size.
 */
export class MessageReader {
  /** Bytes of a header that spans pieces. */
  private head = Buffer.alloc(5)
  private headHave = 0
  /** The message being assembled, and how much of it is here. */
  private body: Buffer | undefined
  private bodyHave = 0
  /** Where a message that spans pieces is assembled, if not in a fresh buffer. */
  ring: MessageRing | undefined

  constructor(private readonly maxBytes: number) {}

  /** Hands the messages `piece` completes to `onMessage`, in order; false once it returned false (the rest of the piece is dropped). */
  push(piece: Buffer, onMessage: OnMessage): boolean {
    let at = 0
    while (at < piece.length) {
      if (this.body) {
        const n = Math.min(piece.length - at, this.body.length - this.bodyHave)
        piece.copy(this.body, this.bodyHave, at, at + n)
        this.bodyHave += n
        at += n
        if (this.bodyHave === this.body.length) {
          const msg = this.body
          this.body = undefined
          if (onMessage(msg, 0, msg.length) === false) return false
        }
        continue
      }
      if (this.headHave === 0 && piece.length - at >= 5) {
        const len = this.check(piece[at]!, piece.readUInt32BE(at + 1))
        if (piece.length - at - 5 >= len) {
          at += 5 + len
          if (onMessage(piece, at - len, at) === false) return false
          continue
        }
        at += 5
        this.start(len)
        continue
      }
      const n = Math.min(5 - this.headHave, piece.length - at)
      piece.copy(this.head, this.headHave, at, at + n)
      this.headHave += n
      at += n
      if (this.headHave === 5) {
        this.headHave = 0
        const len = this.check(this.head[0]!, this.head.readUInt32BE(1))
        if (len === 0) {
          if (onMessage(EMPTY_MESSAGE, 0, 0) === false) return false
        } else this.start(len)
      }
    }
    return true
  }
  /** The stream ended: a message cut short is a broken stream. */
  end(): void {
    if (this.body || this.headHave > 0) throw callFailure(Status.INTERNAL, 'the stream ended inside a message')
  }

  private start(len: number): void {
    this.body = this.ring?.take(len) ?? Buffer.allocUnsafe(len)
    this.bodyHave = 0
  }

  private check(flag: number, len: number): number {
    if (flag !== 0) throw callFailure(Status.INTERNAL, 'the daemon sent a compressed message without saying how')
    if (len > this.maxBytes) throw callFailure(Status.RESOURCE_EXHAUSTED, `Received message larger than max (${len} vs. ${this.maxBytes})`)
    return len
  }
}

const EMPTY_MESSAGE = Buffer.alloc(0)

/**
 * Buffers for messages that span DATA pieces (a blob's 1 MiB messages come
 * in 16 KiB pieces), taken in turn: the one taken `count` takes ago is
 * reused. On this VM the first touch of fresh memory costs more than the
 * copy into it (and the GC after); a read through a ring allocates nothing
 * per message. Only for a reader that holds at most `count - 1` messages
 * while the next one is assembled (GrpcBlobService's lent reads); until
 * `lending` is set, and for a message larger than a buffer, each message
 * gets a fresh buffer as without a ring.
 */
export class MessageRing {
  lending = false
  private readonly buffers: Buffer[] = []
  private next = 0

  constructor(
    private readonly count: number,
    private readonly bytes: number,
  ) {}

  take(len: number): Buffer | undefined {
    if (!this.lending || len > this.bytes) return undefined
    const b = (this.buffers[this.next] ??= Buffer.allocUnsafeSlow(this.bytes))
    this.next = (this.next + 1) % this.count
    return b.subarray(0, len)
  }
}
