import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { BackendError } from '../errors.js'
import { type ListenAddress, bindFailure, bindTarget } from '../daemon/listen.js'
import type { Store } from '../store/store.js'
import type { TlsIdentity } from '../daemon/tls.js'
import { type CacheOptions, type Log, cacheHandler } from './cache-handler.js'
import { capConnections } from '../daemon/connection-cap.js'
import type { DaemonLimits } from '../daemon/server.js'
import { loggedPath } from './request-log.js'

/** Where the cache listens: Nix reaches binary caches over TCP only. */
export type TcpAddress = Extract<ListenAddress, { kind: 'tcp' }>

export interface HttpCache {
  /** The URL Nix uses for this cache (`--substituters`, `nix copy --from`), with the port actually bound. */
  url: string
  /** Stops accepting requests, stops NAR renders in flight, waits (up to `graceMs`) for connections to close. */
  shutdown(graceMs?: number): Promise<void>
}

/** What clients may hold of the cache: the daemon's limits, as HTTP/1.1 applies them (0: never, for the times). */
export type HttpLimits = Pick<DaemonLimits, 'maxConnections' | 'idleTimeoutMs' | 'callIdleMs' | 'maxCallMs'>

/** Node's defaults, kept as upper bounds: a request's headers within a minute, an idle keep-alive connection closed after 5 s. */
const HEADERS_TIMEOUT_MS = 60_000
const KEEP_ALIVE_TIMEOUT_MS = 5_000

/**
 * Serves `store` as a Nix binary cache over HTTP/1.1 (node:http: what Nix's
 * curl speaks, no framework needed), over TLS given `tls`, within `limits`
 * (none when unset: tests, embedding).
 */
export async function startHttpCache(store: Store, listen: TcpAddress, log: Log, opts: CacheOptions, tls?: TlsIdentity, limits?: HttpLimits): Promise<HttpCache> {
  const stopped = new AbortController()
  const handler = withinCallTime(cacheHandler(store, opts, log, stopped.signal), limits?.maxCallMs ?? 0, log)
  const headersMs = Math.min(HEADERS_TIMEOUT_MS, limits?.idleTimeoutMs || HEADERS_TIMEOUT_MS)
  // requestTimeout 0: Node's default (5 minutes for a whole request body) would cut an honest upload of a large NAR; --max-call-time bounds it instead.
  const timeouts = { headersTimeout: headersMs, requestTimeout: 0, connectionsCheckingInterval: Math.min(30_000, Math.ceil(headersMs / 2)) }
  const server = tls ? https.createServer({ cert: tls.current.cert, key: tls.current.key, ...timeouts }, handler) : http.createServer(timeouts, handler)
  const unsubscribe = tls?.onReplace((p) => (server as https.Server).setSecureContext({ cert: p.cert, key: p.key }))
  if (limits) {
    capConnections([server], limits.maxConnections, log, 'HTTP connections')
    server.keepAliveTimeout = Math.min(KEEP_ALIVE_TIMEOUT_MS, limits.idleTimeoutMs || KEEP_ALIVE_TIMEOUT_MS)
    // A socket with no bytes either way for this long (a client that stopped reading a NAR, or sending one) is destroyed.
    server.timeout = limits.callIdleMs
  }
  // Nix sends every PUT with `Expect: 100-continue`: the handler says "continue" only to an upload it accepts, so a refused one never sends its body.
  server.on('checkContinue', handler)
  // CONNECT (a proxy's verb) goes to no handler: node would drop the connection without a word. A cache has no tunnel to give.
  server.on('connect', (_req, socket: Duplex) => socket.end('HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'))
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: Error) => reject(new BackendError(`cannot listen on ${bindTarget(listen)} for HTTP: ${bindFailure(e)}`, { cause: e })))
    server.listen(listen.port, listen.host, () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  let stopping: Promise<void> | undefined
  return {
    url: `${tls ? 'https' : 'http'}://${bindTarget(listen, port)}`,
    shutdown(graceMs = 10_000) {
      stopping ??= new Promise<void>((resolve) => {
        stopped.abort(new Error('the daemon is shutting down'))
        unsubscribe?.()
        // close() ends idle keep-alive connections; busy ones end with their response, or are cut after graceMs.
        const force = setTimeout(() => server.closeAllConnections(), graceMs)
        server.close(() => {
          clearTimeout(force)
          resolve()
        })
      })
      return stopping
    },
  }
}

/**
 * `handler` with each request cut (its socket destroyed: a render or an
 * upload in flight stops, an upload's staged data is discarded) once it
 * has run for `maxCallMs` (0: never): a client that trickles a NAR in, or
 * reads one out, forever is never idle.
 */
function withinCallTime(handler: (req: IncomingMessage, res: ServerResponse) => void, maxCallMs: number, log: Log) {
  if (maxCallMs <= 0) return handler
  return (req: IncomingMessage, res: ServerResponse): void => {
    const timer = setTimeout(() => {
      log(`${req.method} ${loggedPath(req.url)} cut: it took longer than ${maxCallMs / 1000} s (--max-call-time)`)
      req.socket.destroy()
    }, maxCallMs)
    res.once('close', () => clearTimeout(timer))
    handler(req, res)
  }
}
