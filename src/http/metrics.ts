import type { ServerResponse } from 'node:http'

/*
 * The binary cache's /metrics in Prometheus' text exposition format
 * (version 0.0.4): counters end in `_total`, every family has its
 * `# HELP` and `# TYPE`. Hand-written: a few counters do not need a
 * client library.
 */

type Labels = Record<string, string>

/** Label values as the format escapes them: backslash, double quote, newline. */
const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')

/** One metric family: a value per label set. */
abstract class Family {
  protected readonly values = new Map<string, number>()

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
  ) {}

  protected add(labels: Labels, by: number): void {
    const key = Object.entries(labels)
      .map(([k, v]) => `${k}="${escape(v)}"`)
      .join(',')
    this.values.set(key, (this.values.get(key) ?? 0) + by)
  }

  render(): string {
    let text = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`
    // A family never touched still says 0, so a scrape sees it exists.
    const values = this.values.size > 0 ? this.values : new Map([['', 0]])
    for (const [key, v] of values) text += `${this.name}${key === '' ? '' : `{${key}}`} ${v}\n`
    return text
  }
}

export class Counter extends Family {
  constructor(name: string, help: string) {
    if (!name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`)
    super(name, help, 'counter')
  }

  inc(labels: Labels = {}, by = 1): void {
    this.add(labels, by)
  }
}

export class Gauge extends Family {
  constructor(name: string, help: string) {
    super(name, help, 'gauge')
  }

  inc(labels: Labels = {}): void {
    this.add(labels, 1)
  }

  dec(labels: Labels = {}): void {
    this.add(labels, -1)
  }
}

/** What the binary cache counts; one per process, as the daemon serves one cache. */
export class CacheMetrics {
  readonly requests = new Counter('tvix_http_requests_total', 'HTTP requests answered, by method, route and status.')
  readonly responseBytes = new Counter('tvix_http_response_bytes_total', 'Response body bytes sent, by route.')
  readonly narinfoHits = new Counter('tvix_http_narinfo_hits_total', 'narinfo requests for a path the store has.')
  readonly narinfoMisses = new Counter('tvix_http_narinfo_misses_total', 'narinfo requests for a path the store lacks (404).')
  readonly narRendersInFlight = new Gauge('tvix_http_nar_renders_in_flight', 'NARs being rendered from the castore right now.')
  /** For the upload side: `metrics.uploads.inc({ kind: 'nar' | 'narinfo' | 'ls', status: '200' })`. */
  readonly uploads = new Counter('tvix_http_uploads_total', 'PUT requests finished, by kind and status.')
  readonly uploadBytes = new Counter('tvix_http_upload_bytes_total', 'Request body bytes received by uploads.')

  render(): string {
    return [this.requests, this.responseBytes, this.narinfoHits, this.narinfoMisses, this.narRendersInFlight, this.uploads, this.uploadBytes].map((f) => f.render()).join('')
  }
}

export const metrics = new CacheMetrics()

/** The content type Prometheus scrapes the text format as. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** Methods counted by name; anything else is `other`, so a client cannot grow the label set. */
const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'OPTIONS'])

/**
 * Counts a request once its response is over (finished or cut short):
 * its method, route and status, and the body bytes written, which are
 * counted as they pass res.write/res.end (a NAR streamed through pipeline too).
 */
export function countRequest(m: CacheMetrics, method: string | undefined, route: string, res: ServerResponse): void {
  let bytes = 0
  const count = (chunk: unknown, encoding?: unknown) => {
    if (typeof chunk === 'string') bytes += Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
    else if (chunk instanceof Uint8Array) bytes += chunk.length
  }
  const { write, end } = res
  res.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
    count(chunk, rest[0])
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest)
  } as ServerResponse['write']
  res.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    if (typeof chunk !== 'function') count(chunk, rest[0])
    return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest)
  } as ServerResponse['end']
  res.once('close', () => {
    m.requests.inc({ method: METHODS.has(method ?? '') ? method! : 'other', route, status: String(res.statusCode) })
    m.responseBytes.inc({ route }, bytes)
  })
}
