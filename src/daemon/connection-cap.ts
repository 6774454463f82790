/** A node:net server (grpc-js's HTTP/2 servers, node:http's): it refuses sockets beyond `maxConnections`, emitting 'drop'. */
export interface NetServer {
  maxConnections: number
  on(e: 'drop', f: () => void): unknown
}

/**
 * Caps `servers` at `max` open connections each: more are closed as they
 * arrive (the client sees the connection reset, and may retry). Refusals
 * are logged at most one line a minute, however many there are.
 */
export function capConnections(servers: Iterable<NetServer>, max: number, log: (line: string) => void, what = 'connections'): void {
  let lastLog = 0
  for (const s of servers) {
    s.maxConnections = max
    s.on('drop', () => {
      if (Date.now() - lastLog < 60_000) return
      lastLog = Date.now()
      log(`refusing ${what}: ${max} are open (--max-connections)`)
    })
  }
}
