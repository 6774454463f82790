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

  /** A client-streaming call, one message per body. */
  clientStream(method: string, bodies: Uint8Array[]): Promise<{ code: number; details?: string; response?: Buffer }> {
    return new Promise((resolve) => {
      const call = this.client.makeClientStreamRequest(method, raw, raw, (err: ServiceError | null, res?: Buffer) =>
        resolve(err ? { code: err.code, details: err.details } : { code: 0, response: res }),
      )
      for (const b of bodies) call.write(Buffer.from(b))
      call.end()
    })
  }

  /** A server-streaming call: how many messages it streamed before it ended OK (rejects with the status otherwise). */
  serverStreamCount(method: string, body: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      let n = 0
      const call = this.client.makeServerStreamRequest(method, raw, raw, Buffer.from(body))
      call.on('data', () => n++)
      call.on('error', reject)
      call.on('end', () => resolve(n))
    })
  }

  close(): void {
    this.client.close()
  }
}
