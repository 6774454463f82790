import { createReadStream } from 'node:fs'
import os from 'node:os'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { BackendError } from '../../errors.js'
import type { CacheWriter } from './cache-writer.js'

/** Attempts per request, and the first pause between them (doubling, with jitter): Nix's download-attempts and retry time. */
const ATTEMPTS = 5
const FIRST_PAUSE_MS = 250
/** Connections per cache, as Nix's http-connections bounds its own. */
const CONNECTIONS = 16
/** Statuses that mean "the cache does not have it" (Nix reads all four so). */
const ABSENT = new Set([404, 410, 401, 403])

interface Answer {
  status: number
  body: string
}

/**
 * A binary cache over HTTP (`http(s)://`, `nix+http(s)://`), written as
 * Nix's http:// store writes one: PUTs with the whole body and its
 * Content-Length, Nix's content types, GET/HEAD to look. Connection
 * errors and 5xx are retried with backoff; any other answer that is not a
 * success is an error naming the file, the status and the server's reason.
 * Credentials in the URL (`http://user:pass@host`) go as Basic auth.
 */
export class HttpCacheWriter implements CacheWriter {
  readonly display: string
  private readonly base: URL
  private readonly auth: string | undefined
  private agent: Agent | undefined

  constructor(base: URL) {
    this.base = new URL(base)
    if (this.base.username || this.base.password) {
      this.auth = `Basic ${Buffer.from(`${decodeURIComponent(this.base.username)}:${decodeURIComponent(this.base.password)}`).toString('base64')}`
      this.base.username = ''
      this.base.password = ''
    }
    // Never a password in a message.
    this.display = this.base.href.replace(/\/$/, '')
  }

  async spoolDir(): Promise<string> {
    return os.tmpdir()
  }

  async exists(name: string, signal?: AbortSignal): Promise<boolean> {
    const a = await this.send('HEAD', name, undefined, signal)
    if (ABSENT.has(a.status)) return false
    return this.ok(a, 'read', name) && true
  }

  async readText(name: string, signal?: AbortSignal): Promise<string | undefined> {
    const a = await this.send('GET', name, undefined, signal)
    if (ABSENT.has(a.status)) return undefined
    this.ok(a, 'read', name)
    return a.body
  }

  async putFile(name: string, file: string, size: number, contentType: string, signal?: AbortSignal): Promise<void> {
    this.ok(await this.send('PUT', name, { type: contentType, size, open: () => createReadStream(file) }, signal), 'upload', name)
  }

  async putText(name: string, text: string, contentType: string, signal?: AbortSignal): Promise<void> {
    this.ok(await this.send('PUT', name, { type: contentType, size: Buffer.byteLength(text), open: () => text }, signal), 'upload', name)
  }

  async close(): Promise<void> {
    await this.agent?.close()
    this.agent = undefined
  }

  private ok(a: Answer, what: string, name: string): true {
    if (a.status >= 200 && a.status < 300) return true
    throw new BackendError(`cannot ${what} ${name} ${what === 'upload' ? 'to' : 'from'} ${this.display}: HTTP ${a.status}${reason(a.body)}`)
  }

  /** One request, retried on connection errors and 5xx; the body is opened anew for each attempt. */
  private async send(method: string, name: string, body: { type: string; size: number; open(): Readable | string } | undefined, signal?: AbortSignal): Promise<Answer> {
    const url = new URL(name, this.base)
    this.agent ??= new Agent({ connections: CONNECTIONS })
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await request(url, {
          method: method as 'GET',
          dispatcher: this.agent,
          signal,
          headers: {
            ...(this.auth ? { authorization: this.auth } : {}),
            ...(body ? { 'content-type': body.type, 'content-length': String(body.size) } : {}),
          },
          body: body?.open(),
        })
        const text = method === 'HEAD' ? (await res.body.dump(), '') : await res.body.text()
        if (res.statusCode < 500 || attempt === ATTEMPTS) return { status: res.statusCode, body: text }
      } catch (e) {
        if (signal?.aborted) throw signal.reason
        if (attempt === ATTEMPTS || !retriable(e)) {
          throw new BackendError(`cannot ${method === 'PUT' ? `upload ${name} to` : `read ${name} from`} ${this.display}: ${(e as Error).message}`, { cause: e })
        }
      }
      // Nix's backoff: the pause doubles, times 2^[0, 0.5) of jitter.
      await sleep(FIRST_PAUSE_MS * 2 ** (attempt - 1 + Math.random() / 2), undefined, { signal })
    }
  }
}

/** Connection-level failures (refused, reset, timed out, cut short); not a bad request or a body that failed to read. */
function retriable(e: unknown): boolean {
  const code = (e as { code?: string }).code ?? ''
  return /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|UND_ERR_SOCKET|UND_ERR_CLOSED|UND_ERR_CONNECT_TIMEOUT|UND_ERR_HEADERS_TIMEOUT|UND_ERR_BODY_TIMEOUT)$/.test(code)
}

/** The server's reason: the first line of its answer, if any. */
function reason(body: string): string {
  const line = body.trim().split('\n')[0]!.trim().slice(0, 200)
  return line ? `: ${line}` : ''
}
