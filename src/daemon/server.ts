import { Server, ServerCredentials } from '@grpc/grpc-js'
import fs from 'node:fs'
import type { Http2Session } from 'node:http2'
import { BackendError } from '../errors.js'
import { Status, StatusError } from '../grpc/status.js'
import { MAX_MESSAGE_BYTES, SERVICES, type ServiceName, serviceDefinition } from '../grpc/definitions.js'
import type { Store } from '../store/store.js'
import { blobHandler } from './blob-handler.js'
import type { Log } from './calls.js'
import { directoryHandler } from './directory-handler.js'
import { HEALTH_SERVICE_NAME, addHealthService } from './health.js'
import { type ListenAddress, bindTarget, clearStaleSocket, clientUrl } from './listen.js'
import { pathInfoHandler } from './path-info-handler.js'
import { addReflectionService } from './reflection.js'

export interface Daemon {
  /** The store URL clients use, with the port actually bound. */
  url: string
  /** Stops accepting calls, lets in-flight ones finish (up to `graceMs`), removes the socket file. */
  shutdown(graceMs?: number): Promise<void>
}

/**
 * Serves a store over the tvix protocol: BlobService, DirectoryService,
 * PathInfoService, plus grpc.health.v1 and server reflection. Message
 * sizes are capped explicitly; an oversized message is refused by grpc-js
 * with RESOURCE_EXHAUSTED.
 */
export interface DaemonOptions {
  /** Largest NAR one CalculateNAR call may render (DEFAULT_MAX_NAR_SIZE when unset). */
  maxNarSize?: number
}

export async function startDaemon(store: Store, listen: ListenAddress, log: Log, opts: DaemonOptions = {}): Promise<Daemon> {
  // Aborted at shutdown: long calls (a NAR render) stop instead of holding it up.
  const stopped = new AbortController()
  const server = new Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  })
  widenReceiveWindow(server)
  server.addService(serviceDefinition('tvix.castore.v1.BlobService', 'server'), blobHandler(store, log))
  server.addService(serviceDefinition('tvix.castore.v1.DirectoryService', 'server'), directoryHandler(store, log))
  server.addService(serviceDefinition('tvix.store.v1.PathInfoService', 'server'), pathInfoHandler(store, log, { maxNarSize: opts.maxNarSize, stopped: stopped.signal }))
  const names = Object.keys(SERVICES) as ServiceName[]
  const health = addHealthService(server, names)
  addReflectionService(server, [...names, HEALTH_SERVICE_NAME])

  if (listen.kind === 'unix') await clearStaleSocket(listen.path)
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(bindTarget(listen), ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(new BackendError(`cannot listen on ${bindTarget(listen)}: ${err.message}`, { cause: err })) : resolve(p),
    )
  })

  widenSessionWindows(server)
  let stopping: Promise<void> | undefined
  return {
    url: clientUrl(listen, port),
    shutdown(graceMs = 10_000) {
      stopping ??= new Promise<void>((resolve) => {
        // Ends open health Watch streams, which would otherwise hold up tryShutdown.
        health.shutdown()
        stopped.abort(new StatusError(Status.UNAVAILABLE, 'the daemon is shutting down'))
        const force = setTimeout(() => server.forceShutdown(), graceMs)
        server.tryShutdown(() => {
          clearTimeout(force)
          if (listen.kind === 'unix') fs.rmSync(listen.path, { force: true })
          resolve()
        })
      })
      return stopping
    },
  }
}

/** HTTP/2 receive window for uploads, per stream and per connection. */
const RECEIVE_WINDOW = 16 << 20

/**
 * grpc-js leaves a server's HTTP/2 receive windows at the 64 KiB default
 * and has no option for them (its `grpc-node.flow_control_window` is
 * client-side), which caps a blob upload at a round trip per 64 KiB. Its
 * server keeps the options it passes to http2.createServer in a field;
 * adding `initialWindowSize` there widens every stream's window. Both
 * hooks are best effort: if a grpc-js version renames the fields, uploads
 * are slower, nothing else changes.
 */
function widenReceiveWindow(server: Server): void {
  const opts = (server as unknown as { commonServerOptions?: { settings?: Record<string, number> } }).commonServerOptions
  if (opts) opts.settings = { ...opts.settings, initialWindowSize: RECEIVE_WINDOW }
}

/** The connection-level window is per session: set it as each session opens. */
function widenSessionWindows(server: Server): void {
  const servers = (server as unknown as { http2Servers?: Map<{ on(e: 'session', f: (s: Http2Session) => void): void }, unknown> }).http2Servers
  for (const h2 of servers?.keys() ?? []) {
    h2.on('session', (session) => {
      try {
        session.setLocalWindowSize(RECEIVE_WINDOW)
      } catch {
        // a session already closing
      }
    })
  }
}
