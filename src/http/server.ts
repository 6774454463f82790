import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { BackendError } from '../errors.js'
import { type ListenAddress, bindFailure, bindTarget } from '../daemon/listen.js'
import type { Store } from '../store/store.js'
import type { TlsIdentity } from '../daemon/tls.js'
import { type CacheOptions, type Log, cacheHandler } from './cache-handler.js'

/** Where the cache listens: Nix reaches binary caches over TCP only. */
export type TcpAddress = Extract<ListenAddress, { kind: 'tcp' }>

export interface HttpCache {
  /** The URL Nix uses for this cache (`--substituters`, `nix copy --from`), with the port actually bound. */
  url: string
  /** Stops accepting requests, stops NAR renders in flight, waits (up to `graceMs`) for connections to close. */
  shutdown(graceMs?: number): Promise<void>
}

/** Serves `store` as a Nix binary cache over HTTP/1.1 (node:http: what Nix's curl speaks, no framework needed), over TLS given `tls`. */
export async function startHttpCache(store: Store, listen: TcpAddress, log: Log, opts: CacheOptions, tls?: TlsIdentity): Promise<HttpCache> {
  const stopped = new AbortController()
  const handler = cacheHandler(store, opts, log, stopped.signal)
  const server = tls ? https.createServer({ cert: tls.current.cert, key: tls.current.key }, handler) : http.createServer(handler)
  const unsubscribe = tls?.onReplace((p) => (server as https.Server).setSecureContext({ cert: p.cert, key: p.key }))
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
