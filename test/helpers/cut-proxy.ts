import net from 'node:net'

/**
 * A TCP proxy on loopback in front of a server the tests share (the
 * suite's PostgreSQL or radosgw, which no test may stop): cutting it is,
 * to the client, the server going away: every open connection is reset
 * and new ones are refused until it is restored on the same port. It can
 * cut itself the moment a client sends given bytes (a statement's text, a
 * request line), before they reach the server: "stopped mid-operation" at
 * a point chosen by what the client does, not by the clock.
 */
export class CutProxy {
  private server: net.Server | undefined
  private readonly sockets = new Set<net.Socket>()
  private trigger: string | undefined
  /** Whether the last cutOn's bytes came. */
  triggered = false

  private constructor(
    private readonly target: { host: string; port: number },
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<CutProxy> {
    const probe = net.createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const port = (probe.address() as net.AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    const proxy = new CutProxy(target, port)
    await proxy.restore()
    return proxy
  }

  /** Listens again: new connections reach the server. */
  async restore(): Promise<void> {
    if (this.server) return
    const server = net.createServer((client) => this.relay(client))
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.port, '127.0.0.1', () => resolve())
    })
  }

  /** Stops listening and resets every connection. */
  cut(): void {
    this.server?.close()
    this.server = undefined
    for (const s of this.sockets) s.resetAndDestroy()
    this.sockets.clear()
  }

  /** Cuts the proxy when a client sends bytes containing `needle`, before they are forwarded (then `triggered`). */
  cutOn(needle: string): void {
    this.trigger = needle
    this.triggered = false
  }

  async close(): Promise<void> {
    this.trigger = undefined
    this.cut()
  }

  private relay(client: net.Socket): void {
    const upstream = net.connect(this.target.port, this.target.host)
    this.sockets.add(client)
    this.sockets.add(upstream)
    const drop = () => {
      client.destroy()
      upstream.destroy()
      this.sockets.delete(client)
      this.sockets.delete(upstream)
    }
    client.on('error', drop)
    upstream.on('error', drop)
    client.on('close', drop)
    upstream.on('close', drop)
    client.on('data', (chunk: Buffer) => {
      if (this.trigger && chunk.includes(this.trigger)) {
        this.trigger = undefined
        this.triggered = true
        this.cut()
        return
      }
      upstream.write(chunk)
    })
    upstream.pipe(client)
  }
}
