import { Client, InterceptingCall, credentials, type ClientWritableStream, type Interceptor, type ServiceError } from '@grpc/grpc-js'
import { once } from 'node:events'
import { MAX_MESSAGE_BYTES, type ServiceName, serviceDefinition } from '../../grpc/definitions.js'
import { Status, fromStatus, isServiceError } from '../../grpc/status.js'
import { abortable, whenAborted } from '../../util/abortable.js'
import { IntegrityError } from '../../errors.js'
import { type Connection, H2Streams, callFailure } from './h2-stream.js'

export type { Connection }
import type { CallOptions } from '../../util/call-options.js'

/**
 * One HTTP/2 channel to a daemon and typed helpers for the three call
 * shapes. Calls fail fast (no wait-for-ready): a daemon that is down is
 * one UNAVAILABLE error, turned into a clear BackendError by fromStatus.
 */
/** Bytes in flight per call before the sender waits for the reader. */
const FLOW_CONTROL_WINDOW = 16 * 1024 * 1024

/** A truncated length prefix: malformed as any request message. */
const ABORT_BYTES = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
const ABORT = Symbol('abort')


/**
 * grpc-js sends the host of a `grpc+https://ADDRESS:PORT` as the TLS server
 * name even when it is an address, and Node warns about that (DEP0123) on
 * stderr, where the CLI promises one error line at most. The certificate is
 * still checked against the address; only that warning is dropped.
 */
let quietIpServername = false
function silenceIpServernameWarning(): void {
  if (quietIpServername) return
  quietIpServername = true
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void
  process.emitWarning = ((warning: unknown, ...rest: unknown[]) => {
    const code = typeof rest[0] === 'object' ? (rest[0] as { code?: string } | undefined)?.code : rest[1]
    if (code !== 'DEP0123') emit(warning, ...rest)
  }) as typeof process.emitWarning
}

/** Adds `authorization: Bearer TOKEN` to every call's metadata (also over plain HTTP/2: a unix socket, loopback). */
function bearer(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${token}`)
        next(metadata, listener)
      },
    })
}

export class RpcClient {
  /** grpc-js's channel, made at the first call that needs grpc-js (a client stream): a CLI whose calls are all lean never loads it. */
  private grpcClient: Client | undefined
  /** Unary and server-streaming calls, without grpc-js's per-call set-up (and, in the bundle, without loading grpc-js). */
  private readonly lean: H2Streams

  /** Set once the daemon answered UNIMPLEMENTED to our BatchBlobService (a tvix daemon, or ours without it): a call per blob from then on. */
  batchesUnsupported = false

  constructor(
    readonly target: string,
    /** For messages: how the user wrote the address. */
    readonly display: string,
    private readonly connection: Connection = {},
  ) {
    this.lean = new H2Streams(target, MAX_MESSAGE_BYTES, connection)
  }

  private get client(): Client {
    if (this.grpcClient) return this.grpcClient
    const { connection } = this
    if (connection.tls) silenceIpServernameWarning()
    const channel = connection.tls ? credentials.createSsl(connection.tls.ca ?? null) : credentials.createInsecure()
    this.grpcClient = new Client(this.target, channel, {
      interceptors: connection.token === undefined ? [] : [bearer(connection.token)],
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      // HTTP/2's default 64 KiB window caps a blob read at ~250 MB/s on loopback.
      'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW,
    })
    return this.grpcClient
  }

  private method(service: ServiceName, name: string) {
    const def = serviceDefinition(service, 'client')[name]!
    return def
  }

  /**
   * One request, one answer, on a lean call (the wire of a grpc-js unary
   * call). An aborted `signal` cancels the call, which fails with the
   * signal's reason; an answer of no message or of more than one fails
   * as grpc-js fails it.
   */
  async unary<Req, Res>(service: ServiceName, name: string, req: Req, { signal }: CallOptions = {}): Promise<Res> {
    const m = this.method(service, name)
    let answer: Res | undefined
    let count = 0
    await this.lean.each(m.path, m.requestSerialize(req), (b) => {
      if (++count > 1) throw callFailure(Status.UNIMPLEMENTED, 'Too many responses received')
      answer = (m.responseDeserialize as (b: Buffer) => Res)(b as Buffer)
    }, signal)
    if (count === 0) throw callFailure(Status.UNIMPLEMENTED, 'No message received')
    return answer!
  }

  /**
   * A server stream on a lean HTTP/2 call (H2Streams): the request encoded
   * here, the responses decoded as they are read. Fails like a grpc-js
   * call (see error()); an aborted `signal` cancels it.
   */
  async *leanServerStream<Req, Res>(service: ServiceName, name: string, req: Req, { signal }: CallOptions = {}): AsyncGenerator<Res> {
    const m = this.method(service, name)
    const decode = m.responseDeserialize as (b: Buffer) => Res
    for await (const msg of this.lean.call(m.path, m.requestSerialize(req), signal)) yield decode(msg as Buffer)
  }

  /** The decoded messages of a server stream that answers with at most `maxBytes` of them (H2Streams.collect); undefined beyond. */
  async leanCollect<Req, Res>(service: ServiceName, name: string, req: Req, maxBytes: number, { signal }: CallOptions = {}): Promise<Res[] | undefined> {
    const m = this.method(service, name)
    const decode = m.responseDeserialize as (b: Buffer) => Res
    // Framing counts too: room for a message header per MiB.
    const messages = await this.lean.collect(m.path, m.requestSerialize(req), maxBytes + 16 * (1 + (maxBytes >> 20)), signal)
    return messages?.map((b) => decode(b as Buffer))
  }

  /** Each decoded message of a server stream, handed to `onMessage` as it arrives (H2Streams.each). */
  async leanEach<Req, Res>(service: ServiceName, name: string, req: Req, onMessage: (m: Res) => void, { signal }: CallOptions = {}): Promise<void> {
    const m = this.method(service, name)
    const decode = m.responseDeserialize as (b: Buffer) => Res
    await this.lean.each(m.path, m.requestSerialize(req), (b) => onMessage(decode(b as Buffer)), signal)
  }

  /**
   * A client stream whose requests are all in memory (a batch), on a lean
   * HTTP/2 call: sent in one go, the single answer decoded (at most
   * `maxBytes` of it).
   */
  async leanBatch<Req, Res>(service: ServiceName, name: string, reqs: readonly Req[], maxBytes: number, { signal }: CallOptions = {}): Promise<Res> {
    const m = this.method(service, name)
    const answer = await this.lean.collect(m.path, reqs.map((r) => m.requestSerialize(r)), maxBytes, signal)
    if (answer?.length !== 1) throw new IntegrityError(`the daemon answered ${name} with ${answer ? answer.length : 'too many'} messages`)
    return (m.responseDeserialize as (b: Buffer) => Res)(answer[0] as Buffer)
  }

  /**
   * A client stream on a lean HTTP/2 call (H2Streams.send): each request
   * given as the pieces of its encoding, copied once into a framed buffer;
   * resolves with the single answer decoded. Fails like a grpc-js call
   * (see error()); an aborted `signal` cancels it, as a failing `src` does.
   */
  async leanClientStream<Res>(service: ServiceName, name: string, src: AsyncIterable<readonly Uint8Array[]>, { signal }: CallOptions = {}): Promise<Res> {
    signal?.throwIfAborted()
    const m = this.method(service, name)
    const answer = await this.lean.send(m.path, signal ? abortable(src, signal) : src, MAX_MESSAGE_BYTES, signal)
    if (answer?.length !== 1) throw new IntegrityError(`the daemon answered ${name} with ${answer ? answer.length : 'too many'} messages`)
    return (m.responseDeserialize as (b: Buffer) => Res)(answer[0] as Buffer)
  }

  /**
   * Streams `src` as requests with backpressure (on grpc-js); resolves with the single
   * response. An aborted `signal` stops sending and cancels the call, as a
   * failing `src` does.
   */
  async clientStream<Req, Res>(service: ServiceName, name: string, src: AsyncIterable<Req> | Iterable<Req>, { signal }: CallOptions = {}): Promise<Res> {
    signal?.throwIfAborted()
    const m = this.method(service, name)
    let call!: ClientWritableStream<Req>
    const serialize = (v: Req) => (v === ABORT ? ABORT_BYTES : m.requestSerialize(v))
    const response = new Promise<Res>((resolve, reject) => {
      call = this.client.makeClientStreamRequest(m.path, serialize, m.responseDeserialize as (b: Buffer) => Res, (err: ServiceError | null, res?: Res) =>
        err ? reject(err) : resolve(res!),
      )
    })
    // If the server answers early (an error), stop sending.
    let ended = false
    response.catch(() => {}).finally(() => (ended = true))
    const stop = signal && whenAborted(signal)
    const aborted = stop ? [stop.aborted] : []
    try {
      for await (const msg of signal ? abortable(src, signal) : src) {
        if (ended) break
        if (!call.write(msg)) await Promise.race([once(call, 'drain'), response.catch(() => {}), ...aborted])
      }
    } catch (e) {
      // Node's HTTP/2 half-closes a stream before resetting it, so a server
      // may see a cancelled stream as complete until the reset arrives. A
      // message no server accepts, sent first, makes it fail for sure.
      if (!ended) await Promise.race([new Promise<void>((resolve) => call.write(ABORT as Req, () => resolve())), response.catch(() => {})])
      call.cancel()
      throw e
    } finally {
      stop?.dispose()
    }
    call.end()
    if (!signal) return response
    // All sent: an abort now can only cancel the call.
    const cancel = () => call.cancel()
    signal.addEventListener('abort', cancel, { once: true })
    return response.finally(() => signal.removeEventListener('abort', cancel))
  }

  /**
   * Maps a failed call to one of our errors, naming the daemon; a call
   * cancelled because the caller's signal aborted fails with its reason.
   */
  error(e: unknown, opts?: CallOptions): Error {
    if (opts?.signal?.aborted) return opts.signal.reason
    return fromStatus(e, this.display)
  }

  close(): void {
    this.lean.close()
    this.grpcClient?.close()
  }
}

export function isNotFound(e: unknown): boolean {
  return isServiceError(e) && e.code === Status.NOT_FOUND
}

export function isUnimplemented(e: unknown): boolean {
  return isServiceError(e) && e.code === Status.UNIMPLEMENTED
}

/**
 * The first message of a server stream, or `undefined` when the stream
 * fails with NOT_FOUND before sending anything; then the rest.
 */
export async function peek<T>(stream: AsyncIterable<T>): Promise<{ first: IteratorResult<T>; rest: AsyncIterator<T> } | undefined> {
  const it = stream[Symbol.asyncIterator]()
  try {
    return { first: await it.next(), rest: it }
  } catch (e) {
    if (isNotFound(e)) return undefined
    throw e
  }
}
