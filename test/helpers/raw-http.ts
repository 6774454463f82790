/**
 * HTTP/1.1 over a bare TCP socket, so a test controls every byte of a
 * request (lying Content-Length, broken chunking, NULs, endless bodies)
 * and sees every byte of the answer.
 */
import net from 'node:net'

export interface RawResponse {
  /** Status of the first response, undefined when the server closed without one. */
  status?: number
  /** Everything the server sent. */
  raw: string
  /** Whether the server closed the connection. */
  closed: boolean
}

/** A hang, not a slow machine: the bound only keeps a broken server from stalling the suite. */
export const HANG_MS = 60_000

/** Whether `got` holds one complete response: its head, and the body its Content-Length or chunking says. */
function complete(got: string, head: boolean): boolean {
  const end = got.indexOf('\r\n\r\n')
  if (end < 0) return false
  if (head) return true
  const headers = got.slice(0, end)
  const body = got.slice(end + 4)
  const length = /\r\ncontent-length: *(\d+)/i.exec(headers)
  if (length) return body.length >= Number(length[1])
  if (/\r\ntransfer-encoding: *chunked/i.test(headers)) return /(^|\r\n)0\r\n\r\n/.test(body)
  return /^HTTP\/1\.1 (1\d\d|204|304)/.test(headers)
}

/** A connection the test writes to as it likes; `response` settles at the first complete response or the server's close. */
export class RawHttp {
  readonly socket: net.Socket
  private got = ''
  private closedFlag = false
  private waiters: Array<() => void> = []

  constructor(port: number, host = '127.0.0.1') {
    this.socket = net.connect(port, host)
    this.socket.setNoDelay(true)
    this.socket.on('data', (c: Buffer) => {
      this.got += c.toString('latin1')
      this.wake()
    })
    this.socket.on('error', () => {})
    this.socket.on('close', () => {
      this.closedFlag = true
      this.wake()
    })
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w()
  }

  /** What the server sent so far. */
  get received(): string {
    return this.got
  }

  write(bytes: string | Uint8Array): Promise<void> {
    return new Promise((resolve) => this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes, () => resolve()))
  }

  /** The first response (a HEAD's has no body), or what came before the server closed; throws after HANG_MS of neither. */
  async response(opts: { head?: boolean } = {}): Promise<RawResponse> {
    const deadline = Date.now() + HANG_MS
    while (!complete(this.got, opts.head ?? false) && !this.closedFlag) {
      if (Date.now() > deadline) throw new Error(`no answer within ${HANG_MS / 1000} s (a hang); got ${JSON.stringify(this.got.slice(0, 200))}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(this.got)
    return { status: m ? Number(m[1]) : undefined, raw: this.got, closed: this.closedFlag }
  }

  /** Waits for the server to close the connection (bounded as `response` is). */
  async closed(): Promise<RawResponse> {
    const deadline = Date.now() + HANG_MS
    while (!this.closedFlag) {
      if (Date.now() > deadline) throw new Error(`the server kept the connection open for ${HANG_MS / 1000} s`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
    return this.response()
  }

  destroy(): void {
    this.socket.destroy()
  }
}

/** Sends `request` on a fresh connection and returns the first response (or the close); the connection is then dropped. */
export async function rawRequest(port: number, request: string | Uint8Array, opts: { head?: boolean } = {}): Promise<RawResponse> {
  const c = new RawHttp(port)
  try {
    await c.write(request)
    return await c.response(opts)
  } finally {
    c.destroy()
  }
}
