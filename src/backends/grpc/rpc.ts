import { MAX_MESSAGE_BYTES, type ServiceName, serviceDefinition } from '../../grpc/definitions.js'
import { Status, fromStatus, isServiceError } from '../../grpc/status.js'
import { abortable } from '../../util/abortable.js'
import { IntegrityError } from '../../errors.js'
import { type Connection, type FramedRequests, H2Streams, type MessageRing, type OnMessage, callFailure } from './h2-stream.js'

export type { Connection }
import type { CallOptions } from '../../util/call-options.js'

/**
 * One HTTP/2 channel to a daemon and typed helpers for the three call
 * shapes. Calls fail fast (no wait-for-ready): a daemon that is down is
 * one UNAVAILABLE error, turned into a clear BackendError by fromStatus.
 */
export class RpcClient {
  /** Every call, on Node's HTTP/2 with gRPC's framing: none of grpc-js's per-call set-up, and a CLI never loads grpc-js. */
  private readonly lean: H2Streams
  /**
   * Unary calls, on a connection of their own (made at the first). A
   * reader of a large blob asks Stat for its chunk list after its Read
   * began: on the Reads' connection, whose window their unread data may
   * fill (16 Reads of 4 MiB fill 64 MiB), the answer could never come.
   */
  private readonly unaryCalls: H2Streams

  /** Set once the daemon answered UNIMPLEMENTED to our BatchBlobService (a tvix daemon, or ours without it): a call per blob from then on. */
  batchesUnsupported = false

  constructor(
    readonly target: string,
    /** For messages: how the user wrote the address. */
    readonly display: string,
    connection: Connection = {},
  ) {
    this.lean = new H2Streams(target, MAX_MESSAGE_BYTES, connection)
    this.unaryCalls = new H2Streams(target, MAX_MESSAGE_BYTES, connection)
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
    await this.unaryCalls.each(m.path, m.requestSerialize(req), (b, start, end) => {
      if (++count > 1) throw callFailure(Status.UNIMPLEMENTED, 'Too many responses received')
      answer = (m.responseDeserialize as (b: Buffer) => Res)(b.subarray(start, end))
    }, signal)
    if (count === 0) throw callFailure(Status.UNIMPLEMENTED, 'No message received')
    return answer!
  }

  /**
   * A server stream on a lean HTTP/2 call (H2Streams): the request encoded
   * here, the responses decoded as they are read. Fails like a grpc-js
   * call (see error()); an aborted `signal` cancels it.
   */
  async *leanServerStream<Req, Res>(service: ServiceName, name: string, req: Req, opts: CallOptions = {}, ring?: MessageRing): AsyncGenerator<Res> {
    const decode = this.method(service, name).responseDeserialize as (b: Buffer) => Res
    for await (const msg of this.leanServerStreamBytes(service, name, req, opts, ring)) yield decode(msg as Buffer)
  }

  /** As leanServerStream, each message left encoded: its bytes as they came (a view of what HTTP/2 gave where it came in one piece). */
  leanServerStreamBytes<Req>(service: ServiceName, name: string, req: Req, { signal }: CallOptions = {}, ring?: MessageRing): AsyncGenerator<Uint8Array> {
    const m = this.method(service, name)
    return this.lean.call(m.path, m.requestSerialize(req), signal, ring)
  }

  /** The decoded messages of a server stream that answers with at most `maxBytes` of them (H2Streams.collect); undefined beyond. */
  async leanCollect<Req, Res>(service: ServiceName, name: string, req: Req, maxBytes: number, { signal }: CallOptions = {}): Promise<Res[] | undefined> {
    const m = this.method(service, name)
    const decode = m.responseDeserialize as (b: Buffer) => Res
    // Framing counts too: room for a message header per MiB.
    const messages = await this.lean.collect(m.path, m.requestSerialize(req), maxBytes + 16 * (1 + (maxBytes >> 20)), signal)
    return messages?.map((b) => decode(b as Buffer))
  }

  /**
   * Each message of a server stream handed to `onMessage` as it arrives
   * (H2Streams.each), left encoded where it lies, for a caller that reads
   * it in place: a batch of small blobs, one message per blob, with no
   * view or decoded object made per message.
   */
  async leanEachBytes<Req>(service: ServiceName, name: string, req: Req, onMessage: OnMessage, { signal }: CallOptions = {}): Promise<void> {
    const m = this.method(service, name)
    await this.lean.each(m.path, m.requestSerialize(req), onMessage, signal)
  }

  /**
   * A client stream whose requests are all in memory (a batch, framed by
   * the caller), on a lean HTTP/2 call: sent in one go, the single answer
   * decoded (at most `maxBytes` of it).
   */
  async leanBatch<Res>(service: ServiceName, name: string, reqs: FramedRequests, maxBytes: number, { signal }: CallOptions = {}): Promise<Res> {
    const m = this.method(service, name)
    const answer = await this.lean.collect(m.path, reqs, maxBytes, signal)
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
   * Maps a failed call to one of our errors, naming the daemon; a call
   * cancelled because the caller's signal aborted fails with its reason.
   */
  error(e: unknown, opts?: CallOptions): Error {
    if (opts?.signal?.aborted) return opts.signal.reason
    return fromStatus(e, this.display)
  }

  close(): void {
    this.lean.close()
    this.unaryCalls.close()
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
