import { Agent, type Dispatcher, interceptors, request } from 'undici'
import { BackendError } from '../../errors.js'
import type { CallOptions } from '../../util/call-options.js'
import { type CacheFile, type CacheTransport, TransientError } from './transport.js'

/** Connections per origin: enough for `copy --parallel` (at most 64) downloads and the narinfo lookups. */
const CONNECTIONS = 16
/** What Nix takes for "the cache does not have it" on a GET. */
export const ABSENT = new Set([401, 403, 404, 410])
/** What Nix retries: the server's passing trouble. */
export const RETRY = (status: number) => status >= 500 || status === 408 || status === 429

/** The URL without its credentials (`http://user:pass@host`), and those as a Basic `authorization` header. */
export function splitCredentials(url: URL): { base: URL; auth?: string } {
  if (!url.username && !url.password) return { base: url }
  const base = new URL(url)
  base.username = ''
  base.password = ''
  return { base, auth: `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}` }
}

/** undici's connect options for a private CA (none: its defaults, Node's built-in CA list). */
export function tlsConnect(tlsCa?: Buffer): { connect?: { ca: Buffer } } {
  return tlsCa ? { connect: { ca: tlsCa } } : {}
}

/**
 * An HTTP(S) binary cache read with undici: keep-alive connections, bounded
 * per origin, redirects followed (as curl does for Nix), the call's signal
 * on every request (Ctrl-C stops a download at once), and the URL's
 * credentials (`http://user:pass@host`) sent as Basic auth.
 */
export class HttpTransport implements CacheTransport {
  private readonly agent: Agent
  private readonly dispatcher: Dispatcher
  private readonly base: URL
  private readonly auth?: string

  /** `tlsCa`: PEM certificates trusted for https instead of Node's built-in CA list. */
  constructor(url: URL, tlsCa?: Buffer) {
    ;({ base: this.base, auth: this.auth } = splitCredentials(url))
    this.agent = new Agent({ connections: CONNECTIONS, keepAliveTimeout: 10_000, ...tlsConnect(tlsCa) })
    this.dispatcher = this.agent.compose(interceptors.redirect({ maxRedirections: 5 }))
  }

  async open(rel: string, opts: CallOptions = {}): Promise<CacheFile | undefined> {
    const url = new URL(rel, this.base)
    const sameOrigin = url.origin === this.base.origin
    let res: Dispatcher.ResponseData
    try {
      res = await request(url, {
        dispatcher: this.dispatcher,
        signal: opts.signal,
        headers: this.auth && sameOrigin ? { authorization: this.auth } : {},
      })
    } catch (e) {
      opts.signal?.throwIfAborted()
      throw new TransientError(`cannot reach ${url.origin}: ${(e as Error).message}`, { cause: e })
    }
    if (res.statusCode === 200) {
      const length = Number(res.headers['content-length'])
      return { body: res.body, size: Number.isSafeInteger(length) ? length : undefined }
    }
    await res.body.dump().catch(() => {})
    if (ABSENT.has(res.statusCode)) return undefined
    const why = `HTTP ${res.statusCode} for ${url.href}`
    throw RETRY(res.statusCode) ? new TransientError(why) : new BackendError(why)
  }

  async close(): Promise<void> {
    await this.agent.close()
  }
}
