import { Client, credentials, type ServiceError } from '@grpc/grpc-js'

const raw = (b: Buffer) => b

/** A gRPC client speaking raw message bytes to a daemon URL (grpc+http://host:port). */
export class RawGrpc {
  readonly client: Client

  constructor(url: string) {
    this.client = new Client(url.replace(/^grpc\+http:\/\//, '').replace(/^grpc\+unix:\/\//, 'unix:'), credentials.createInsecure(), {
      'grpc.max_send_message_length': 64 << 20,
      'grpc.max_receive_message_length': 64 << 20,
    })
  }

  /**
   * A unary call; never throws: the status code, its details and the
   * response bytes. The deadline only bounds a test against a daemon that
   * never answers (DEADLINE_EXCEEDED then fails its assertions).
   */
  unary(method: string, body: Uint8Array, deadlineMs = 120_000): Promise<{ code: number; details?: string; response?: Buffer }> {
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(method, raw, raw, Buffer.from(body), { deadline: Date.now() + deadlineMs }, (err: ServiceError | null, res?: Buffer) =>
        resolve(err ? { code: err.code, details: err.details } : { code: 0, response: res }),
      )
    })
  }

  /** A client-streaming call, one message per body (the deadline as for `unary`). */
  clientStream(method: string, bodies: Uint8Array[], deadlineMs = 120_000): Promise<{ code: number; details?: string; response?: Buffer }> {
    return new Promise((resolve) => {
      const call = this.client.makeClientStreamRequest(method, raw, raw, { deadline: Date.now() + deadlineMs }, (err: ServiceError | null, res?: Buffer) =>
        resolve(err ? { code: err.code, details: err.details } : { code: 0, response: res }),
      )
      for (const b of bodies) call.write(Buffer.from(b))
      call.end()
    })
  }

  /** A server-streaming call: the status, its details and the messages received before it. */
  serverStream(method: string, body: Uint8Array, deadlineMs = 120_000): Promise<{ code: number; details?: string; messages: Buffer[] }> {
    return new Promise((resolve) => {
      const messages: Buffer[] = []
      const call = this.client.makeServerStreamRequest(method, raw, raw, Buffer.from(body), { deadline: Date.now() + deadlineMs })
      call.on('data', (m: Buffer) => messages.push(m))
      call.on('error', (e: ServiceError) => resolve({ code: e.code, details: e.details, messages }))
      call.on('end', () => resolve({ code: 0, messages }))
    })
  }

  close(): void {
    this.client.close()
  }
}
