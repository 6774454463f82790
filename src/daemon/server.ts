import { Server, ServerCredentials } from '@grpc/grpc-js'
import fs from 'node:fs'
import type { Http2Session } from 'node:http2'
import { BackendError } from '../errors.js'
import { Status, StatusError } from '../grpc/status.js'
import { BATCH_SERVICE, MAX_MESSAGE_BYTES, TVIX_SERVICES, type ServiceName, serviceDefinition } from '../grpc/definitions.js'
import { batchBlobHandler } from './batch-blob-handler.js'
import type { Store } from '../store/store.js'
import { blobHandler } from './blob-handler.js'
import type { Log } from './calls.js'
import { directoryHandler } from './directory-handler.js'
import { HEALTH_SERVICE_NAME, addHealthService } from './health.js'
import { type ListenAddress, bindFailure, bindTarget, clearStaleSocket, clientUrl } from './listen.js'
import { type Rights, authInterceptor } from './auth.js'
import type { SecretSet } from '../util/secret-set.js'
import { pathInfoHandler } from './path-info-handler.js'
import { PutWindow } from './put-window.js'
import { addReflectionService } from './reflection.js'
import { tempRootsPerConnection } from './temp-roots.js'
import type { TlsIdentity } from './tls.js'
import { type TransferLimits, Transfers } from './transfers.js'
import { DEFAULT_MAX_NAR_SIZE } from '../store/nar/size.js'
import { type NetServer, capConnections } from './connection-cap.js'

/** What one client, or all of them together, may hold of the daemon. */
export interface DaemonLimits extends TransferLimits {
  /** Open connections; more are closed as they arrive. */
  maxConnections: number
  /** A connection with no call in flight for this long is closed; keepalive pings find dead peers on busy ones. */
  idleTimeoutMs: number
  /** Largest NAR one CalculateNAR call may render (DEFAULT_MAX_NAR_SIZE when unset). */
  maxNarSize?: number
  /** Small blob Puts are committed together within this (PutWindow; WINDOW_MS when unset, 0: each Put on its own). */
  putWindowMs?: number
  /** A Directory Put with more entries is refused (DEFAULT_MAX_DIRECTORY_ENTRIES when unset). */
  maxDirectoryEntries?: number
  /** false: tvix's services only, without our BatchBlobService (clients fall back to a call per blob, as with a tvix daemon). */
  batchBlobs?: boolean
}

/**
 * --max-directory-entries' default: above the widest Directories of real
 * trees (all-cabal-hashes' ~17,000 package folders; 14,000 entries with
 * 255-byte names already fill the 4 MiB message), well below the ~100,000
 * that 4 MiB of 3-byte names holds. Putting, reading back and rendering
 * one Directory of 65,536 entries took the daemon from 98 to 228 MiB.
 */
export const DEFAULT_MAX_DIRECTORY_ENTRIES = 32_768

/**
 * --max-call-time's default: 64 GiB (--max-nar-size's default) at 10 MB/s
 * takes under 2 hours, so no honest transfer of a path is cut.
 */
export const DEFAULT_MAX_CALL_MS = 2 * 3_600_000

export const DEFAULT_LIMITS: DaemonLimits = {
  maxConnections: 256,
  idleTimeoutMs: 5 * 60_000,
  maxTransfers: 16,
  callIdleMs: 60_000,
  maxCallMs: DEFAULT_MAX_CALL_MS,
}

/** Calls one connection may have in flight (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
const MAX_STREAMS_PER_CONNECTION = 32
/** Keepalive: a ping after this long without traffic, the connection dropped if unanswered for KEEPALIVE_TIMEOUT_MS. */
const KEEPALIVE_TIME_MS = 60_000
const KEEPALIVE_TIMEOUT_MS = 20_000

/** Who may connect and what they may do: TLS on TCP, and tokens for every call but health and reflection. */
export interface DaemonSecurity {
  /** PEM certificate chain and private key (checked by checkTlsPair), replaceable while serving; a unix socket is served without TLS. */
  tls?: TlsIdentity
  tokens?: SecretSet<Rights>
}

export interface Daemon {
  /** The store URL clients use, with the port actually bound. */
  url: string
  /** Stops accepting calls, lets in-flight ones finish (up to `graceMs`), removes the socket file. */
  shutdown(graceMs?: number): Promise<void>
}

/**
 * Serves a store over the tvix protocol: BlobService, DirectoryService,
 * PathInfoService, plus our BatchBlobService (unless limits.batchBlobs is
 * false), grpc.health.v1 and server reflection. Message
 * sizes are capped explicitly; an oversized message is refused by grpc-js
 * with RESOURCE_EXHAUSTED.
 */
export async function startDaemon(store: Store, listen: ListenAddress, log: Log, limits: DaemonLimits = DEFAULT_LIMITS, security: DaemonSecurity = {}): Promise<Daemon> {
  // Aborted at shutdown: long calls (a NAR render) stop instead of holding it up.
  const stopped = new AbortController()
  const server = new Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_concurrent_streams': MAX_STREAMS_PER_CONNECTION,
    'grpc.max_connection_idle_ms': limits.idleTimeoutMs,
    'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
    interceptors: security.tokens ? [authInterceptor(security.tokens, log)] : [],
  })
  widenReceiveWindow(server)
  const transfers = new Transfers(limits)
  const rootsOf = tempRootsPerConnection(store)
  const window = PutWindow.for(store, log, limits.putWindowMs)
  // No path's NAR may exceed maxNarSize, so no blob it holds may either.
  const maxBlobSize = limits.maxNarSize ?? DEFAULT_MAX_NAR_SIZE
  server.addService(serviceDefinition('tvix.castore.v1.BlobService', 'server'), blobHandler(store, log, transfers, rootsOf, window, maxBlobSize))
  server.addService(
    serviceDefinition('tvix.castore.v1.DirectoryService', 'server'),
    directoryHandler(store, log, transfers, rootsOf, window, limits.maxDirectoryEntries ?? DEFAULT_MAX_DIRECTORY_ENTRIES),
  )
  server.addService(
    serviceDefinition('tvix.store.v1.PathInfoService', 'server'),
    pathInfoHandler(store, log, { maxNarSize: limits.maxNarSize, stopped: stopped.signal, rootsOf, window }),
  )
  const names: ServiceName[] = [...TVIX_SERVICES]
  if (limits.batchBlobs !== false) {
    server.addService(serviceDefinition(BATCH_SERVICE, 'server'), batchBlobHandler(store, log, transfers, rootsOf, window, maxBlobSize))
    names.push(BATCH_SERVICE)
  }
  const health = addHealthService(server, names)
  addReflectionService(server, [...names, HEALTH_SERVICE_NAME])

  if (listen.kind === 'unix') await clearStaleSocket(listen.path)
  const tls = listen.kind === 'tcp' ? security.tls : undefined
  const credentials = tls ? new FollowingCredentials(tls) : ServerCredentials.createInsecure()
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(bindTarget(listen), credentials, (err, p) =>
      err ? reject(new BackendError(`cannot listen on ${bindTarget(listen)}: ${bindFailure(err)}`, { cause: err })) : resolve(p),
    )
  })

  watchConnections(server, limits, log)
  let stopping: Promise<void> | undefined
  return {
    url: clientUrl(listen, port, tls !== undefined),
    shutdown(graceMs = 10_000) {
      stopping ??= new Promise<void>((resolve) => {
        // Ends open health Watch streams, which would otherwise hold up tryShutdown.
        health.shutdown()
        stopped.abort(new StatusError(Status.UNAVAILABLE, 'the daemon is shutting down'))
        const force = setTimeout(() => server.forceShutdown(), graceMs)
        server.tryShutdown(() => {
          clearTimeout(force)
          if (listen.kind === 'unix') fs.rmSync(listen.path, { force: true })
          // Blobs put in the last window are committed before the daemon exits (a failure is logged by the window).
          void Promise.resolve(window?.flush())
            .catch(() => {})
            .then(() => resolve())
        })
      })
      return stopping
    },
  }
}

/**
 * HTTP/2 receive window, per stream and per connection: what a client may
 * send before the daemon consumes it, so also what an idle or waiting call
 * can make the daemon buffer. 64 KiB (the default) costs a round trip per
 * 64 KiB of upload; 256 KiB is a pack's chunk and write batch. At 1 MiB,
 * 40 Puts stalled behind 8 transfer slots took the daemon to 188-230 MiB
 * (limit 200); at 256 KiB, 166-178 MiB.
 */
const RECEIVE_WINDOW = 256 << 10

/**
 * grpc-js leaves a server's HTTP/2 receive windows at the 64 KiB default
 * and has no option for them (its `grpc-node.flow_control_window` is
 * client-side). Its server keeps the options it passes to
 * http2.createServer in a field; adding `initialWindowSize` there widens
 * every stream's window. The hooks here and in watchConnections are best
 * effort: if a grpc-js version renames the fields, uploads are slower and
 * connections uncounted, nothing else changes.
 */
function widenReceiveWindow(server: Server): void {
  const opts = (server as unknown as { commonServerOptions?: { settings?: Record<string, number> } }).commonServerOptions
  if (opts) opts.settings = { ...opts.settings, initialWindowSize: RECEIVE_WINDOW }
}

interface H2Server extends NetServer {
  on(e: 'session', f: (s: Http2Session) => void): void
  on(e: 'drop', f: () => void): void
}

/**
 * grpc-js has no cap on connections, but its HTTP/2 servers are net
 * servers, which refuse sockets beyond `maxConnections`. Its idle timeout
 * starts with the first call, so a connection that never even sends the
 * HTTP/2 preface is closed here after the same time. Also sets each
 * session's connection-level window as it opens.
 */
function watchConnections(server: Server, limits: DaemonLimits, log: Log): void {
  const servers = [...((server as unknown as { http2Servers?: Map<H2Server, unknown> }).http2Servers?.keys() ?? [])]
  capConnections(servers, limits.maxConnections, log)
  for (const h2 of servers) {
    h2.on('session', (session) => {
      if (limits.idleTimeoutMs < 2 ** 31) {
        const silent = setTimeout(() => session.destroy(), limits.idleTimeoutMs)
        silent.unref()
        session.once('remoteSettings', () => clearTimeout(silent))
        session.once('close', () => clearTimeout(silent))
      }
      try {
        session.setLocalWindowSize(RECEIVE_WINDOW)
      } catch {
        // a session already closing
      }
    })
  }
}

/**
 * Server TLS credentials that take up a replaced certificate: grpc-js
 * hands updated context options to its HTTP/2 server's setSecureContext.
 * (createSsl's credentials are fixed for the server's life.) No client
 * certificates are asked for.
 */
class FollowingCredentials extends ServerCredentials {
  private unsubscribe?: () => void

  constructor(private readonly identity: TlsIdentity) {
    super({ requestCert: false }, { cert: identity.current.cert, key: identity.current.key })
  }

  override _addWatcher(watcher: Parameters<ServerCredentials['_addWatcher']>[0]): void {
    this.unsubscribe ??= this.identity.onReplace((p) => this.updateSecureContextOptions({ cert: p.cert, key: p.key }))
    super._addWatcher(watcher)
  }

  override _removeWatcher(watcher: Parameters<ServerCredentials['_removeWatcher']>[0]): void {
    super._removeWatcher(watcher)
    if (this.getWatcherCount() === 0) {
      this.unsubscribe?.()
      this.unsubscribe = undefined
    }
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this
  }
}
