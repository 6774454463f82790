import { Command } from '@oclif/core/command'
import * as Flags from '@oclif/core/flags'
import type { Interfaces } from '@oclif/core'
import { type ClientSecurity, openStore, storeLabel } from '../backends/open-store.js'
import { BackendError, NoSpaceError, StoreError, isNoSpace, systemMessage } from '../errors.js'
import type { Caller } from '../ops/require-capability.js'
import { DEFAULT_STORE_DIR } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { bindSignal } from '../store/bind-signal.js'
import { interrupted, runInterruptCleanups } from '../util/interrupt.js'
import { type Failure, reportError } from './report.js'
import { TOKEN_ENV, clientSecurity } from './client-security.js'

export type StoreFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof StoreCommand)['baseFlags'] & T['flags']>
export type StoreArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * Shared by every command that works on a store: the store flags, opening
 * and closing the store, and turning any failure into one `error:` line on
 * stderr with the error's exit code (a stack trace only with DEBUG).
 */
export abstract class StoreCommand<T extends typeof Command> extends Command {
  /** Commands that handle SIGINT/SIGTERM themselves (the daemon) set this. */
  static handlesSignals = false
  /** Commands that write (import, the daemon) create a store that does not exist yet; the others refuse it (NotFoundError). */
  static createsStore = false

  static override baseFlags = {
    store: Flags.string({
      summary: 'Store URL: a path, file:///abs, memory://, grpc+http(s)://host:port or grpc+unix:///socket.',
      description: 'Defaults to $XDG_DATA_HOME/tvix-store (else ~/.local/share/tvix-store).',
      env: 'TVIX_STORE',
      helpGroup: 'STORE',
    }),
    'blob-service-addr': Flags.string({
      summary: 'Store URL for the blob service alone (overrides --store for blobs).',
      env: 'BLOB_SERVICE_ADDR',
      helpGroup: 'STORE',
    }),
    'directory-service-addr': Flags.string({
      summary: 'Store URL for the directory service alone.',
      env: 'DIRECTORY_SERVICE_ADDR',
      helpGroup: 'STORE',
    }),
    'path-info-service-addr': Flags.string({
      summary: 'Store URL for the path info service alone.',
      env: 'PATH_INFO_SERVICE_ADDR',
      helpGroup: 'STORE',
    }),
    'cache-store': Flags.string({
      summary: 'Store URL of a cache in front of the store: reads fill it, writes go to the store, then to it.',
      env: 'TVIX_CACHE_STORE',
      helpGroup: 'STORE',
    }),
    'tls-ca': Flags.string({
      summary: 'Trust these PEM certificates for grpc+https:// daemons and https:// caches (default: $NIX_SSL_CERT_FILE, else $SSL_CERT_FILE, else the built-in CA list).',
      helpValue: 'FILE',
      env: 'TVIX_STORE_TLS_CA',
      helpGroup: 'STORE',
    }),
    'auth-token-file': Flags.string({
      summary: `Send the token in FILE to daemons (authorization: Bearer); $${TOKEN_ENV} holds one itself.`,
      helpValue: 'FILE',
      helpGroup: 'STORE',
    }),
    'store-dir': Flags.string({
      summary: 'Store directory that printed store paths live under.',
      env: 'NIX_STORE_DIR',
      default: DEFAULT_STORE_DIR,
      helpGroup: 'STORE',
    }),
  }

  protected flags!: StoreFlags<T>
  protected args!: StoreArgs<T>
  private opened: Store | undefined
  private bound: Store | undefined
  private security: ClientSecurity | undefined

  public override async init(): Promise<void> {
    await super.init()
    // Interrupted mid-write: remove our temp files, say so, exit as a shell expects.
    // (The daemon installs its own handlers, which let calls in flight finish.)
    if (!(this.ctor as typeof StoreCommand).handlesSignals) {
      for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
        process.once(sig, () => {
          runInterruptCleanups()
          process.stderr.write(`error: interrupted (${sig})\n`)
          process.exit(code)
        })
      }
    }
    // Before oclif's own listener, which rethrows (a stack trace) all but EPIPE, and swallows that.
    process.stdout.prependListener('error', (e: NodeJS.ErrnoException) => this.stdoutFailed(e))
    const { args, flags } = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (this.ctor as typeof StoreCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as StoreFlags<T>
    this.args = args as StoreArgs<T>
  }

  /**
   * Opens the store once, lazily: a command that fails on its arguments
   * never touches it. Its calls get the `interrupted` signal (a daemon
   * stops on its own terms: calls in flight finish).
   */
  protected async store(): Promise<Store> {
    const f = this.flags
    this.opened ??= await openStore({
      url: f.store,
      storeDir: f['store-dir'],
      blobServiceAddr: f['blob-service-addr'],
      directoryServiceAddr: f['directory-service-addr'],
      pathInfoServiceAddr: f['path-info-service-addr'],
      cacheUrl: f['cache-store'],
      mustExist: !(this.ctor as typeof StoreCommand).createsStore,
      client: this.clientSecurity(),
    })
    if ((this.ctor as typeof StoreCommand).handlesSignals) return this.opened
    return (this.bound ??= bindSignal(this.opened, interrupted))
  }

  /** TLS trust and token for remote stores, read once (also for the URLs a command opens itself, copy's --from and --to). */
  protected clientSecurity(): ClientSecurity {
    return (this.security ??= clientSecurity(this.flags))
  }

  /** The store's name that stays the same between runs (keys what import-cache.ts keeps): a local store's folder, else the URL its PathInfos come from. */
  protected storeScope(): string {
    const f = this.flags
    return storeLabel(f['path-info-service-addr'] ?? f.store)
  }

  /** How an op refusing a capability the store lacks names the command and the store (`store`: a URL other than --store's). */
  protected caller(what: string, store?: string): Caller {
    const f = this.flags
    const mixed = [f['blob-service-addr'], f['directory-service-addr'], f['path-info-service-addr']].some((a) => a !== undefined)
    return { what, storeName: store ?? (mixed ? 'a store combined from --*-service-addr' : (f.store ?? 'the default store')) }
  }

  /**
   * Standard output cannot be written (`> /dev/full`, a closed pipe): the
   * command cannot do its job, whatever it is doing now. A reader that went
   * away (`| head`) ends us quietly, as SIGPIPE ends Nix and other Unix
   * tools; anything else is one error line. Temp files go as on an interrupt.
   */
  private stdoutFailed(e: NodeJS.ErrnoException): never {
    runInterruptCleanups()
    if (e.code === 'EPIPE') process.exit(141)
    reportError(new BackendError(`cannot write to standard output: ${systemMessage(e)}`, { cause: e }), this.jsonEnabled())
    process.exit(1)
  }

  public override async catch(err: Failure): Promise<void> {
    if (err.oclif?.exit === 0) return
    // writeAll saw stdout fail before its 'error' event was emitted.
    if (err === process.stdout.errored) this.stdoutFailed(err)
    // A full disk that the layer below did not name (a Directory or PathInfo write).
    if (isNoSpace(err) && !(err instanceof StoreError)) err = new NoSpaceError(systemMessage(err), { cause: err })
    process.exitCode = reportError(err, this.jsonEnabled())
  }

  /**
   * What `run()` returns, printed under --json as one compact line (oclif
   * would pretty-print it over many): scripts read it line by line.
   */
  protected override logJson(json: unknown): void {
    process.stdout.write(JSON.stringify(json) + '\n')
  }

  public override async finally(err: Error | undefined): Promise<void> {
    await this.opened?.close()
    await super.finally(err)
  }
}
