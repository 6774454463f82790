import { createReadStream } from 'node:fs'
import os from 'node:os'
import type { Readable } from 'node:stream'
import { Agent, request } from 'undici'
import { BackendError } from '../../errors.js'
import type { CacheWriter } from './cache-writer.js'
import { ABSENT, RETRY, splitCredentials, tlsConnect } from './http-transport.js'
import { TransientError, withRetries } from './transport.js'

/** Connections per cache, as Nix's http-connections bounds its own. */
const CONNECTIONS = 16

interface Answer {
  status: number
  body: string
}

interface Body {
  type: string
  size: number
  /** Opened anew for each attempt. */
  open(): Readable | string
}

/**
 * A binary cache over HTTP (`http(s)://`, `nix+http(s)://`), written as
 * Nix's http:// store writes one: PUTs with the whole body and its
 * Content-Length (never chunked), Nix's content types, GET/HEAD to look.
 * Connection errors and the server's passing trouble (5xx, 408, 429) are
 * retried with backoff; any other answer that is not a success is an error
 * naming the file, the status and the server's reason. Credentials in the
 * URL (`http://user:pass@host`) go as Basic auth, and never into messages.
 */
export class HttpCacheWriter implements CacheWriter {
  readonly display: string
  private readonly base: URL
  private readonly auth: string | undefined
  private agent: Agent | undefined

  /** `tlsCa`: PEM certificates trusted for https instead of Node's built-in CA list. */
  constructor(
    url: URL,
    private readonly tlsCa?: Buffer,
  ) {
    ;({ base: this.base, auth: this.auth } = splitCredentials(url))
    this.display = this.base.href.replace(/\/$/, '')
  }

  async spoolDir(): Promise<string> {
    return os.tmpdir()
  }

  async exists(name: string, signal?: AbortSignal): Promise<boolean> {
    const a = await this.send('HEAD', name, undefined, signal)
    return !ABSENT.has(a.status) && this.ok(a, 'HEAD', name)
  }

  async readText(name: string, signal?: AbortSignal): Promise<string | undefined> {
    const a = await this.send('GET', name, undefined, signal)
    if (ABSENT.has(a.status)) return undefined
    this.ok(a, 'GET', name)
    return a.body
  }

  async putFile(name: string, file: string, size: number, contentType: string, signal?: AbortSignal): Promise<void> {
    this.ok(await this.send('PUT', name, { type: contentType, size, open: () => createReadStream(file) }, signal), 'PUT', name)
  }

  async putText(name: string, text: string, contentType: string, signal?: AbortSignal): Promise<void> {
    this.ok(await this.send('PUT', name, { type: contentType, size: Buffer.byteLength(text), open: () => text }, signal), 'PUT', name)
  }

  async close(): Promise<void> {
    await this.agent?.close()
    this.agent = undefined
  }

  private ok(a: Answer, method: string, name: string): true {
    if (a.status >= 200 && a.status < 300) return true
    throw new BackendError(`${this.failed(method, name)}: HTTP ${a.status}${reason(a.body)}`)
  }

  private failed(method: string, name: string): string {
    return method === 'PUT' ? `cannot upload ${name} to ${this.display}` : `cannot read ${name} from ${this.display}`
  }

  /** One request, its answer read whole (these answers are a few lines); retried as Nix retries. */
  private send(method: 'GET' | 'HEAD' | 'PUT', name: string, body: Body | undefined, signal?: AbortSignal): Promise<Answer> {
    const url = new URL(name, this.base)
    const agent = (this.agent ??= new Agent({ connections: CONNECTIONS, ...tlsConnect(this.tlsCa) }))
    return withRetries(async () => {
      let answer: Answer
      try {
        const res = await request(url, {
          method,
          dispatcher: agent,
          signal,
          headers: {
            ...(this.auth ? { authorization: this.auth } : {}),
            ...(body ? { 'content-type': body.type, 'content-length': String(body.size) } : {}),
          },
          body: body?.open(),
        })
        answer = { status: res.statusCode, body: method === 'HEAD' ? (await res.body.dump(), '') : await res.body.text() }
      } catch (e) {
        signal?.throwIfAborted()
        throw new TransientError(`${this.failed(method, name)}: ${(e as Error).message}`, { cause: e })
      }
      if (RETRY(answer.status)) throw new TransientError(`${this.failed(method, name)}: HTTP ${answer.status}${reason(answer.body)}`)
      return answer
    }, { signal })
  }
}

/** The server's reason: the first line of its answer, if any. */
function reason(body: string): string {
  const line = body.trim().split('\n')[0]!.trim().slice(0, 200)
  return line ? `: ${line}` : ''
}
