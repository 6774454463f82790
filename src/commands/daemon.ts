import * as Flags from '@oclif/core/flags'
import { StoreCommand } from '../cli/store-command.js'
import { DEFAULT_LISTEN, parseListen, reachableFromElsewhere } from '../daemon/listen.js'
import { type TlsPair, TlsIdentity, checkTlsPair } from '../daemon/tls.js'
import { type Reloadable, reloadOnHangup } from '../daemon/reload.js'
import { parseTokenFile } from '../daemon/auth.js'
import type { CacheOptions } from '../http/cache-handler.js'
import type { HttpLimits, TcpAddress } from '../http/server.js'
import { readKeyFile } from '../cli/key-file.js'
import { parseSecretKey, type SecretKey } from '../store/signing.js'
import { checkCompressor, parseServedCompression } from '../http/compressed-nar.js'
import { storeLabel } from '../backends/open-store.js'
import { collectGarbage, garbageCollector } from '../ops/gc.js'
import { prepareToServe } from '../store/capabilities.js'
import type { Store } from '../store/store.js'
import { DEFAULT_GRACE_MS, parseDuration } from '../cli/duration.js'
import { UsageError } from '../errors.js'
import { parseSize } from '../util/size.js'
import { httpAccess, parseAuthFile } from '../http/auth.js'
import type { SecretSet } from '../util/secret-set.js'
import type { Rights } from '../daemon/auth.js'

export default class Daemon extends StoreCommand<typeof Daemon> {
  static override summary = 'Serve a store over the tvix gRPC protocol.'
  static override description =
    'Serves tvix.castore.v1.BlobService, tvix.castore.v1.DirectoryService and tvix.store.v1.PathInfoService, ' +
    'plus grpc.health.v1.Health and server reflection; with --http-listen, also the store as a Nix binary cache. ' +
    'Listens on loopback unless told otherwise. ' +
    'SIGINT/SIGTERM stop it cleanly: in-flight calls finish, a socket file is removed. ' +
    'SIGHUP re-reads --tls-cert/--tls-key, --auth-file and --http-auth-file (all or nothing: a bad file keeps the previous ones).'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --listen 127.0.0.1:9000 --store /var/lib/tvix-store',
    '<%= config.bin %> <%= command.id %> --listen unix:/run/tvix-store.sock',
    '<%= config.bin %> <%= command.id %> --http-listen 127.0.0.1:8080   # nix copy --from http://127.0.0.1:8080 …',
    '<%= config.bin %> <%= command.id %> --listen 0.0.0.0:8000 --tls-cert cert.pem --tls-key key.pem --auth-file tokens   # grpc+https://HOST:8000',
  ]
  static override handlesSignals = true
  // Serving a new, empty store is normal: its first write creates it, as import's does.
  static override createsStore = true
  static override flags = {
    listen: Flags.string({
      char: 'l',
      aliases: ['listen-address'],
      summary: 'HOST:PORT, [IPV6]:PORT or unix:/path/to.sock.',
      default: DEFAULT_LISTEN,
    }),
    'max-nar-size': Flags.string({
      summary: 'Refuse (RESOURCE_EXHAUSTED) a CalculateNAR whose NAR would be larger than SIZE, e.g. 64G, and a blob Put of more; (413) an HTTP upload of one; bounds what one call can cost.',
      helpValue: 'SIZE',
      default: '64G',
    }),
    'max-directory-entries': Flags.integer({
      summary: 'Refuse (RESOURCE_EXHAUSTED) a Directory Put with more entries than N; each costs the daemon a few hundred bytes as it is checked, stored and read back.',
      default: 32_768,
      min: 1,
    }),
    'max-connections': Flags.integer({
      summary: 'Open client connections at most, on gRPC and on the HTTP cache each; more are refused as they arrive.',
      default: 256,
      min: 1,
    }),
    'max-transfers': Flags.integer({
      summary: 'Blob and Directory transfers (Read, Put, Get) served at once; more wait their turn.',
      default: 16,
      min: 1,
    }),
    'idle-timeout': Flags.string({
      summary: 'Close a connection with no call in flight for DURATION (0: never); on HTTP at most 5s between requests, 60s for a request\'s headers.',
      helpValue: 'DURATION',
      default: '5m',
    }),
    'call-idle-timeout': Flags.string({
      summary: 'Cancel a transfer (an HTTP request too) whose client sends or reads nothing for DURATION (0: never).',
      helpValue: 'DURATION',
      default: '60s',
    }),
    'max-call-time': Flags.string({
      summary: 'Cancel a transfer (gRPC blob or Directory stream, HTTP request) still running after DURATION (0: never); bounds a client that trickles forever.',
      helpValue: 'DURATION',
      default: '2h',
    }),
    'put-window': Flags.string({
      summary: 'Commit small blob Puts together within DURATION (0: each one durable when answered).',
      helpValue: 'DURATION',
      default: '1s',
    }),
    'batch-blobs': Flags.boolean({
      summary: 'Serve tvix_store.ext.v1.BatchBlobService beside tvix\'s services (many small blobs per call); --no-batch-blobs serves tvix\'s only, as a tvix daemon does (clients then use a call per blob).',
      default: true,
      allowNo: true,
    }),
    'http-listen': Flags.string({
      summary: 'Also serve the store as a Nix binary cache (read-only unless --http-upload) on HOST:PORT, [IPV6]:PORT or PORT (on 127.0.0.1).',
      helpValue: '[HOST:]PORT',
    }),
    'secret-key-file': Flags.string({
      summary: 'Sign every narinfo the binary cache serves with this key (NAME:BASE64, as `nix-store --generate-binary-cache-key` writes it); repeatable.',
      helpValue: 'FILE',
      multiple: true,
      dependsOn: ['http-listen'],
    }),
    'http-upload': Flags.boolean({
      summary: 'Accept uploads (nix copy --to http://…) on the binary cache; needs --http-auth-file unless it listens on loopback.',
      dependsOn: ['http-listen'],
    }),
    'http-auth-file': Flags.string({
      summary: 'Require HTTP Basic credentials (lines user:password, or :token) for uploads, and with --http-private for reads.',
      helpValue: 'FILE',
      dependsOn: ['http-listen'],
    }),
    'http-private': Flags.boolean({
      summary: 'Require the --http-auth-file credentials for reads too (/nix-cache-info stays open).',
      dependsOn: ['http-auth-file'],
    }),
    'http-compression': Flags.string({
      summary:
        'Serve NARs compressed as they are sent: none (default), zstd, xz or br. On a LAN the CPU costs more than the bytes it saves, ' +
        'and only an uncompressed NAR has a known size, so a client can resume it; zstd where the link is slow (it costs least CPU).',
      helpValue: 'none|zstd|xz|br',
      default: 'none',
    }),
    priority: Flags.integer({
      summary: 'The binary cache\'s Priority in /nix-cache-info (Nix tries lower first; cache.nixos.org says 40).',
      default: 40,
      min: 0,
    }),
    'tls-cert': Flags.string({
      summary: 'Serve gRPC (on TCP) and the binary cache over TLS with this PEM certificate chain; needs --tls-key.',
      helpValue: 'FILE',
      dependsOn: ['tls-key'],
    }),
    'tls-key': Flags.string({
      summary: 'The PEM private key of --tls-cert.',
      helpValue: 'FILE',
      dependsOn: ['tls-cert'],
    }),
    'auth-file': Flags.string({
      summary: 'Require a bearer token on every gRPC call but health and reflection: lines "read TOKEN" or "write TOKEN" (# comments).',
      helpValue: 'FILE',
    }),
    'insecure-allow-anyone': Flags.boolean({
      summary: 'Start even though other machines can reach the daemon and write without credentials (--listen without --auth-file, --http-upload without --http-auth-file).',
    }),
    'gc-interval': Flags.string({
      summary: 'Run gc (orphaned objects only, as plain `gc`) on the served local store every DURATION, e.g. 6h.',
      helpValue: 'DURATION',
    }),
  }

  async run(): Promise<void> {
    const listen = parseListen(this.flags.listen)
    const httpFlag = this.flags['http-listen']
    // A bare port is on loopback: a cache reachable from elsewhere is asked for by name.
    const httpListen = httpFlag === undefined ? undefined : parseListen(/^\d+$/.test(httpFlag) ? `127.0.0.1:${httpFlag}` : httpFlag, 'http-listen', true)
    const anyone = this.flags['insecure-allow-anyone']
    const authFile = this.flags['http-auth-file']
    const access = httpListen?.kind === 'tcp' ? httpAccess(httpListen.host, this.flags['http-upload'], this.flags['http-private'], authFile === undefined ? undefined : { file: authFile, text: readKeyFile(authFile, 'auth file') }, anyone) : undefined
    const tokenFile = this.flags['auth-file']
    if (tokenFile === undefined && reachableFromElsewhere(listen) && !anyone) {
      throw new UsageError(`--listen ${this.flags.listen}, which other machines can reach, needs --auth-file (else anyone could write to the store; --insecure-allow-anyone to allow it)`)
    }
    const tokens = tokenFile === undefined ? undefined : parseTokenFile(readKeyFile(tokenFile, 'auth file'), tokenFile)
    const pair = this.tlsPair(listen.kind === 'tcp' || httpListen !== undefined)
    const tls = pair && new TlsIdentity(pair)
    const maxNarSize = parseSize(this.flags['max-nar-size'], 'max-nar-size')
    const compression = parseServedCompression(this.flags['http-compression'])
    if (compression !== 'none') {
      if (!httpListen) throw new UsageError('--http-compression needs --http-listen')
      await checkCompressor(compression)
    }
    // Heard from the start: a stop requested while the store opens or the port binds is not lost.
    const signalled = new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', resolve)
      process.once('SIGTERM', resolve)
    })
    // Read before anything starts: a bad key is one error line, not a half-started daemon.
    const secretKeys = (this.flags['secret-key-file'] ?? []).map((f) => parseSecretKey(readKeyFile(f)))
    const store = await this.store()
    prepareToServe(store)
    // Nothing after the stop line: a handler whose client vanished may settle after the server closed.
    let stopped = false
    const log = (line: string) => {
      if (!stopped) process.stderr.write(`${new Date().toISOString()} ${line}\n`)
    }
    const { startDaemon } = await import('../daemon/server.js')
    const { quietGrpcLogs } = await import('../daemon/quiet-grpc.js')
    quietGrpcLogs()
    const every = this.flags['gc-interval']
    const gc = every === undefined ? undefined : periodicGc(garbageCollector(store, this.caller('daemon --gc-interval')), parseDuration(every, 'gc-interval'), log)
    const idle = parseDuration(this.flags['idle-timeout'], 'idle-timeout')
    const limits = {
      maxConnections: this.flags['max-connections'],
      idleTimeoutMs: idle,
      callIdleMs: parseDuration(this.flags['call-idle-timeout'], 'call-idle-timeout'),
      maxCallMs: parseDuration(this.flags['max-call-time'], 'max-call-time'),
    }
    const daemon = await startDaemon(store, listen, log, {
      ...limits,
      maxTransfers: this.flags['max-transfers'],
      // grpc-js reads "never" as a very large value.
      idleTimeoutMs: idle === 0 ? Number.MAX_SAFE_INTEGER : idle,
      maxNarSize,
      maxDirectoryEntries: this.flags['max-directory-entries'],
      putWindowMs: parseDuration(this.flags['put-window'], 'put-window'),
      batchBlobs: this.flags['batch-blobs'],
    }, { tls, tokens })
    const cacheOpts = { priority: this.flags.priority, secretKeys, compression, credentials: access?.credentials, private: access?.private, upload: access?.upload ? { maxNarSize } : undefined }
    const cache = httpListen?.kind === 'tcp' ? await startCache(store, httpListen, log, cacheOpts, daemon, tls, limits) : undefined
    if (cache) log(`Nix binary cache at ${cache.url}`)
    if (tokens) log(`gRPC calls need a token from --auth-file ${tokenFile} (health and reflection are open)`)
    if (gc) log(`gc of orphaned objects every ${every}`)
    // Last: whoever waits for this line has read every start-up line before it.
    log(`tvix-store daemon serving ${storeLabel(this.flags.store)} at ${daemon.url}`)
    const stopReloading = reloadOnHangup(this.reloadables(tls, tokens, access?.credentials, secretKeys), log)
    const signal = await signalled
    stopReloading()
    log(`${signal}: stopping (waiting for calls in flight)`)
    await gc?.stop()
    await Promise.all([daemon.shutdown(), cache?.shutdown()])
    log('tvix-store daemon stopped')
    stopped = true
  }

  /** --tls-cert and --tls-key, read and checked before anything starts; `tcp`: something is served over TCP to use them. */
  private tlsPair(tcp: boolean): TlsPair | undefined {
    if (this.flags['tls-cert'] === undefined) return undefined
    if (!tcp) throw new UsageError('--tls-cert: a unix socket is served without TLS (its file permissions guard it); give a TCP --listen or --http-listen')
    return this.readTlsPair()
  }

  private readTlsPair(): TlsPair {
    const certFile = this.flags['tls-cert']!
    const keyFile = this.flags['tls-key']!
    return checkTlsPair({ cert: Buffer.from(readKeyFile(certFile, 'TLS certificate')), key: Buffer.from(readKeyFile(keyFile, 'TLS key')) }, certFile, keyFile)
  }

  /** The files SIGHUP re-reads, each parsed and checked as at start. */
  private reloadables(tls?: TlsIdentity, tokens?: SecretSet<Rights>, credentials?: ReturnType<typeof parseAuthFile>, secretKeys: SecretKey[] = []): Reloadable[] {
    const items: Reloadable[] = []
    if (tls) {
      items.push({
        what: `--tls-cert ${this.flags['tls-cert']}`,
        load: () => {
          const pair = this.readTlsPair()
          return () => tls.replace(pair)
        },
      })
    }
    const tokenFile = this.flags['auth-file']
    if (tokens && tokenFile !== undefined) {
      items.push({
        what: `--auth-file ${tokenFile}`,
        load: () => {
          const fresh = parseTokenFile(readKeyFile(tokenFile, 'auth file'), tokenFile)
          return () => tokens.replaceWith(fresh)
        },
      })
    }
    const authFile = this.flags['http-auth-file']
    if (credentials && authFile !== undefined) {
      items.push({
        what: `--http-auth-file ${authFile}`,
        load: () => {
          const fresh = parseAuthFile(readKeyFile(authFile, 'auth file'), authFile)
          return () => credentials.replaceWith(fresh)
        },
      })
    }
    const keyFiles = this.flags['secret-key-file'] ?? []
    if (keyFiles.length > 0) {
      // Narinfos are signed as served, with this very array: the next request signs with the new keys.
      items.push({
        what: `--secret-key-file ${keyFiles.join(', ')}`,
        load: () => {
          const fresh = keyFiles.map((f) => parseSecretKey(readKeyFile(f)))
          return () => secretKeys.splice(0, secretKeys.length, ...fresh)
        },
      })
    }
    return items
  }
}

/** The HTTP side; if it cannot listen, the gRPC side already started is stopped before the error is reported. */
async function startCache(store: Store, listen: TcpAddress, log: (line: string) => void, opts: CacheOptions, daemon: { shutdown(): Promise<void> }, tls: TlsIdentity | undefined, limits: HttpLimits) {
  const { startHttpCache } = await import('../http/server.js')
  try {
    return await startHttpCache(store, listen, log, opts, tls, limits)
  } catch (e) {
    await daemon.shutdown()
    throw e
  }
}

/** gc of orphans every `intervalMs`, one run at a time; stop() waits for a run in progress. */
function periodicGc(store: Store, intervalMs: number, log: (line: string) => void): { stop(): Promise<void> } {
  if (intervalMs < 1000) throw new UsageError('--gc-interval must be at least 1s')
  let running: Promise<void> | undefined
  // Shutdown stops a run still waiting for commits to end; a sweep under way finishes.
  const stopping = new AbortController()
  const timer = setInterval(() => {
    running ??= collectGarbage(store, { graceMs: DEFAULT_GRACE_MS, signal: stopping.signal })
      .then((r) => log(`gc: ${r.blobs + r.packs + r.directories} orphaned objects and ${r.tempFiles} leftover temp files deleted, ${(r.bytes / 1048576).toFixed(2)} MiB freed in ${r.seconds.toFixed(2)} s`))
      .catch((e: Error) => {
        if (!stopping.signal.aborted) log(`gc failed: ${e.message}`)
      })
      .finally(() => (running = undefined))
  }, intervalMs)
  timer.unref()
  return {
    async stop() {
      clearInterval(timer)
      stopping.abort()
      await running
    },
  }
}
