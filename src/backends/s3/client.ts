import { createHash } from 'node:crypto'
import fs from 'node:fs'
import { AwsV4Signer } from 'aws4fetch'
import { Agent, type Dispatcher, request } from 'undici'
import { BackendError, UsageError } from '../../errors.js'
import type { CallOptions } from '../../util/call-options.js'
import { TransientError, withRetries } from '../../util/retry.js'
import type { S3Address } from './address.js'

/*
 * The few S3 calls the blob backend makes, signed with AWS Signature V4
 * (aws4fetch: a few kB, loads in ~6 ms) and sent with undici (keep-alive,
 * bounded connections). Measured against radosgw with 16 calls in flight:
 * 1.6-2.5x the throughput of @aws-sdk/client-s3 at ~60 % of its CPU per
 * call, and ~0.35 s less to load (the SDK also prints a Node-version
 * warning on stderr under Node 20). Every object this backend writes is
 * bounded (a chunk, or a chunk list), so bodies are buffers, and a PUT's
 * body is signed with its SHA-256: the server refuses bytes that changed
 * on the way instead of storing them under a content address.
 */

export interface S3Credentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

/** Credentials from the environment, as the AWS tools read them. */
export function credentialsFromEnv(url: string, env = process.env): S3Credentials {
  const accessKeyId = env.AWS_ACCESS_KEY_ID
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY
  if (!accessKeyId || !secretAccessKey) throw new UsageError(`store URL ${JSON.stringify(url)}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for S3`)
  return { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN || undefined }
}

export interface S3Object {
  body: Buffer
  meta: Record<string, string>
}

/** An object as a listing shows it. */
export interface ListedObject {
  /** Relative to the store's prefix. */
  key: string
  size: number
  /** How long ago it was written, by the server's clock. */
  ageMs: number
}

/** Connections to the S3 server: enough for the chunk transfers in flight of a few concurrent calls. */
const CONNECTIONS = 32
/** What a later attempt may cure: the server's passing trouble (radosgw answers 503 SlowDown under load). */
const RETRY = (status: number) => status >= 500 || status === 408 || status === 429
const META = 'x-amz-meta-'

/**
 * The HTTP requests this process sent to S3 (every attempt, retries
 * included; LIST is a ListObjectsV2 page, `created` the PUTs that stored a
 * new object) and the body bytes each way. With TVIX_S3_STATS=FILE set, one
 * JSON line of them is appended to FILE when the process exits: how `npm
 * run bench` (bench/shared.ts) counts the requests of a CLI or a daemon.
 */
export const s3Requests: Record<string, number> = { GET: 0, HEAD: 0, PUT: 0, created: 0, DELETE: 0, LIST: 0, bytesSent: 0, bytesReceived: 0 }
const count = (what: string, n = 1) => (s3Requests[what] = (s3Requests[what] ?? 0) + n)
const statsFile = process.env.TVIX_S3_STATS
if (statsFile) process.once('exit', () => fs.appendFileSync(statsFile, `${JSON.stringify({ pid: process.pid, ...s3Requests })}\n`))

export class S3Client {
  private readonly agent = new Agent({ connections: CONNECTIONS, keepAliveTimeout: 10_000 })
  /** SigV4 signing keys by day, region and service: derived once, not per request (4 HMACs each: ~0.6-1.2 ms of CPU per request without, ~0.15 ms with). */
  private readonly signingKeys = new Map<string, ArrayBuffer>()

  constructor(
    readonly addr: S3Address,
    private readonly creds: S3Credentials,
  ) {}

  /** The object's bytes and metadata, undefined if absent. */
  async get(key: string, opts?: CallOptions): Promise<S3Object | undefined> {
    const r = await this.call('GET', key, opts)
    return r && { body: r.body, meta: r.meta }
  }

  /** The object's metadata, undefined if absent. */
  async head(key: string, opts?: CallOptions): Promise<Record<string, string> | undefined> {
    return (await this.call('HEAD', key, opts))?.meta
  }

  /**
   * Writes the object unless one is there already (`If-None-Match: *`, one
   * round trip, no overwrite race): true if this call created it. Objects
   * are content-addressed, so the one already there is the same.
   */
  async putIfAbsent(key: string, body: Uint8Array, meta: Record<string, string>, opts?: CallOptions): Promise<boolean> {
    const headers: Record<string, string> = { 'if-none-match': '*' }
    for (const [k, v] of Object.entries(meta)) headers[META + k] = v
    return (await this.call('PUT', key, opts, body, headers)) !== undefined
  }

  async delete(key: string, opts?: CallOptions): Promise<void> {
    await this.call('DELETE', key, opts)
  }

  /** The keys under `under` (relative to the store's prefix), page by page (ListObjectsV2). */
  async *keys(under: string, opts?: CallOptions): AsyncGenerator<string> {
    for await (const o of this.objects(under, opts)) yield o.key
  }

  /**
   * The objects under `under` with their sizes and ages, page by page.
   * Ages are by the server's clock (its Date header less LastModified), so a
   * client whose clock is off cannot make a new object look old.
   */
  async *objects(under: string, opts?: CallOptions): AsyncGenerator<ListedObject> {
    const strip = this.addr.prefix ? this.addr.prefix.length + 1 : 0
    let token: string | undefined
    do {
      const q = new URLSearchParams({ 'list-type': '2', prefix: (this.addr.prefix ? `${this.addr.prefix}/` : '') + under })
      if (token) q.set('continuation-token', token)
      const res = (await this.call('GET', undefined, opts, undefined, {}, q))!
      const page = res.body.toString()
      // Date has whole seconds: the end of that second, so a new object never looks younger than new.
      const now = (Date.parse(res.date ?? '') || Date.now()) + 999
      for (const m of page.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
        const c = m[1]!
        const key = unescapeXml(/<Key>([^<]*)<\/Key>/.exec(c)?.[1] ?? '').slice(strip)
        const modified = Date.parse(/<LastModified>([^<]*)<\/LastModified>/.exec(c)?.[1] ?? '')
        yield { key, size: Number(/<Size>(\d+)<\/Size>/.exec(c)?.[1] ?? 0), ageMs: Number.isNaN(modified) ? 0 : now - modified }
      }
      token = /<IsTruncated>true<\/IsTruncated>/.test(page) ? unescapeXml(/<NextContinuationToken>([^<]*)</.exec(page)?.[1] ?? '') : undefined
    } while (token)
  }

  /** Deletes up to 1000 objects in one request (DeleteObjects); an object already gone is no error. */
  async deleteMany(keys: string[], opts?: CallOptions): Promise<void> {
    if (keys.length === 0) return
    const full = (k: string) => (this.addr.prefix ? `${this.addr.prefix}/${k}` : k)
    const body = Buffer.from(`<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>${keys.map((k) => `<Object><Key>${escapeXml(full(k))}</Key></Object>`).join('')}</Delete>`)
    const md5 = createHash('md5').update(body).digest('base64')
    const res = (await this.call('POST', undefined, opts, body, { 'content-md5': md5, 'content-type': 'application/xml' }, new URLSearchParams({ delete: '' })))!
    const failed = [...res.body.toString().matchAll(/<Error>([\s\S]*?)<\/Error>/g)].map((m) => m[1]!).filter((e) => !/<Code>NoSuchKey</.test(e))
    if (failed.length > 0) throw new BackendError(`S3 DeleteObjects ${this.addr.bucket}: ${failed.length} objects not deleted (${/<Code>([^<]*)</.exec(failed[0]!)?.[1] ?? 'error'})`)
  }

  async listKeys(under: string, opts?: CallOptions): Promise<string[]> {
    const all: string[] = []
    for await (const k of this.keys(under, opts)) all.push(k)
    return all
  }

  /** Creates the bucket (an S3 admin's step; the tests' set-up). */
  async createBucket(opts?: CallOptions): Promise<void> {
    await this.call('PUT', undefined, opts, new Uint8Array(0))
  }

  async close(): Promise<void> {
    await this.agent.close()
  }

  private url(key: string | undefined, query?: URLSearchParams): string {
    const { endpoint, bucket, prefix } = this.addr
    if (key === undefined) return `${endpoint}/${bucket}${query ? `?${query}` : ''}`
    const full = prefix ? `${prefix}/${key}` : key
    return `${endpoint}/${bucket}/${full.split('/').map(encodeURIComponent).join('/')}`
  }

  /**
   * One signed request, retried on connection errors and 5xx/429/408.
   * Undefined for 404 (GET/HEAD/DELETE) and 412 (a conditional PUT that
   * found the object); other refusals are one clear BackendError.
   */
  private call(method: string, key: string | undefined, opts: CallOptions = {}, body?: Uint8Array, extra: Record<string, string> = {}, query?: URLSearchParams): Promise<{ body: Buffer; meta: Record<string, string>; date?: string } | undefined> {
    const url = this.url(key, query)
    const what = `S3 ${method} ${this.addr.bucket}/${key === undefined ? '' : this.addr.prefix ? `${this.addr.prefix}/${key}` : key}`
    const sha = body ? createHash('sha256').update(body).digest('hex') : 'UNSIGNED-PAYLOAD'
    return withRetries(
      async () => {
        const signer = new AwsV4Signer({ url, method, headers: { ...extra, 'x-amz-content-sha256': sha }, ...this.creds, service: 's3', region: this.addr.region, cache: this.signingKeys })
        const signed = await signer.sign()
        count(key === undefined && method === 'GET' ? 'LIST' : method)
        count('bytesSent', body?.length ?? 0)
        let res: Dispatcher.ResponseData
        try {
          res = await request(url, { method: method as Dispatcher.HttpMethod, headers: Object.fromEntries(signed.headers), body, dispatcher: this.agent, signal: opts.signal })
        } catch (e) {
          opts.signal?.throwIfAborted()
          throw new TransientError(`${what}: cannot reach ${this.addr.endpoint}: ${(e as Error).message}`, { cause: e })
        }
        let data: Buffer
        try {
          data = Buffer.from(await res.body.arrayBuffer())
        } catch (e) {
          opts.signal?.throwIfAborted()
          throw new TransientError(`${what}: the answer was cut short: ${(e as Error).message}`, { cause: e })
        }
        const s = res.statusCode
        count('bytesReceived', data.length)
        if (s >= 200 && s < 300 && method === 'PUT') count('created')
        if (s >= 200 && s < 300) return { body: data, meta: metaOf(res.headers), date: typeof res.headers.date === 'string' ? res.headers.date : undefined }
        if (s === 404 && method !== 'PUT' && !/<Code>NoSuchBucket</.test(data.toString())) return undefined
        if (s === 412 && method === 'PUT') return undefined
        const code = /<Code>([^<]*)<\/Code>/.exec(data.toString())?.[1] ?? ''
        const why = `${what}: HTTP ${s}${code ? ` ${code}` : ''}`
        if (RETRY(s)) throw new TransientError(why)
        if (code === 'NoSuchBucket') throw new BackendError(`${what}: bucket ${JSON.stringify(this.addr.bucket)} does not exist at ${this.addr.endpoint}`)
        if (s === 403) throw new BackendError(`${why} (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)`)
        throw new BackendError(why)
      },
      { attempts: 5, baseDelayMs: 200, signal: opts.signal },
    )
  }
}

const escapeXml = (s: string) => s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!)
const unescapeXml = (s: string) => s.replace(/&(lt|gt|quot|apos|amp);/g, (_, e: string) => ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' })[e]!)

function metaOf(headers: Dispatcher.ResponseData['headers']): Record<string, string> {
  const meta: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers)) if (k.startsWith(META) && typeof v === 'string') meta[k.slice(META.length)] = v
  return meta
}
