import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { NotFoundError } from '../errors.js'
import { narInfoFields, renderNarInfo } from '../store/narinfo.js'
import * as nixbase32 from '../store/nixbase32.js'
import type { PathInfo } from '../store/path-info.js'
import { type SecretKey, signPathInfo, withSignatures } from '../store/signing.js'
import { HASH_PART_LEN } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { narListing } from '../store/nar/listing.js'
import { METRICS_CONTENT_TYPE, countRequest, metrics } from './metrics.js'
import { BASIC_CHALLENGE, type Credentials } from './auth.js'
import { sendCompressedNar, servedNarInfo } from './compressed-nar.js'
import { type ServedCompression, parseNarFileName, sameNar } from './nar-url.js'
import { byteRange, narBytes, rangeHeaders } from './range.js'
import { failureLine, loggedPath } from './request-log.js'
import { type UploadOptions, uploads } from './upload.js'

export type Log = (line: string) => void

export interface CacheOptions {
  /** `Priority:` of nix-cache-info: lower wins among a client's substituters. */
  priority: number
  /** Each narinfo served gets a `Sig:` by each of these keys, beside the stored ones. */
  secretKeys?: SecretKey[]
  /** Accept `nix copy --to` uploads (PUT); without it a PUT is 403. */
  upload?: UploadOptions
  /** Basic credentials required for uploads, and for reads too when `private`; /nix-cache-info never needs them. */
  credentials?: Credentials
  private?: boolean
  /** What the served narinfos name: NARs compressed as they are sent (default none). */
  compression?: ServedCompression
}

/** A request the server answers with a 4xx: the client's mistake (logged only for uploads, see request-log.ts). */
class ClientError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

const NARINFO = new RegExp(`^/([0-9a-z]{${HASH_PART_LEN}})\\.narinfo$`)
const LISTING = new RegExp(`^/([0-9a-z]{${HASH_PART_LEN}})\\.ls$`)

/** The `route` label of a request in /metrics: a few fixed names, never the path itself. */
function routeOf(path: string): string {
  if (path === '/nix-cache-info' || path === '/metrics') return path.slice(1)
  if (NARINFO.test(path)) return 'narinfo'
  if (LISTING.test(path)) return 'ls'
  return path.startsWith('/nar/') ? 'nar' : 'other'
}

/**
 * The read side of Nix's `http://` binary cache protocol over a Store:
 * `/nix-cache-info`, `/<hash>.narinfo` and `/nar/<hash>-<narhash>.nar`,
 * the NAR rendered from the castore as the client reads it. `stopped`
 * aborts the renders in flight (the server is shutting down).
 */
export function cacheHandler(store: Store, opts: CacheOptions, log: Log, stopped: AbortSignal) {
  const compression = opts.compression ?? 'none'
  const cacheInfo = `StoreDir: ${store.storeDir}\nWantMassQuery: 1\nPriority: ${opts.priority}\n`
  const upload = opts.upload && uploads(store, opts.upload, log, stopped)
  return (req: IncomingMessage, res: ServerResponse): void => {
    countRequest(metrics, req.method, routeOf((req.url ?? '/').split('?')[0]!), res)
    serve(req, res).catch((e: unknown) => fail(req, res, e))
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Only the path names a resource: Nix adds no query to reads, and one is harmless.
    const path = (req.url ?? '/').split('?')[0]!
    if (req.method === 'PUT' && !upload) throw new ClientError(403, 'this binary cache is read-only')
    if (upload?.handles(req.method, path)) {
      authorize(req, true)
      // Awaited by a client that sent `Expect: 100-continue` (Nix does on every PUT): now it sends the body.
      if (req.method === 'PUT' && /^100-continue$/i.test(req.headers.expect ?? '')) res.writeContinue()
      const reply = await upload.serve(req, path)
      return reply && send(req, res, 'text/plain; charset=utf-8', reply.body, reply.status)
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new ClientError(405, `method ${req.method} is not allowed`, { Allow: 'GET, HEAD' })
    if (path === '/nix-cache-info') return send(req, res, 'text/x-nix-cache-info', cacheInfo)
    authorize(req, opts.private)
    const narinfo = NARINFO.exec(path)
    if (narinfo) return send(req, res, 'text/x-nix-narinfo', renderNarInfo(await narInfoOf(narinfo[1]!)))
    const listing = LISTING.exec(path)
    if (listing) return serveListing(req, res, listing[1]!)
    if (path === '/metrics') return send(req, res, METRICS_CONTENT_TYPE, metrics.render())
    if (path.startsWith('/nar/')) return serveNar(req, res, path.slice('/nar/'.length))
    throw new ClientError(404, `no such file in this binary cache: ${path}`)
  }

  /** 401 unless the request carries credentials, where they are `needed` and configured. */
  function authorize(req: IncomingMessage, needed = false): void {
    if (needed && opts.credentials && !opts.credentials.accepts(req.headers.authorization)) {
      throw new ClientError(401, 'this binary cache wants credentials (HTTP Basic, from a netrc file)', { 'WWW-Authenticate': BASIC_CHALLENGE })
    }
  }

  /** The narinfo text for a hash part, its URL naming a NAR this server can find again. */
  async function narInfoOf(hashPart: string) {
    const digest = hashDigest(hashPart)
    let info: PathInfo
    try {
      info = await pathInfo(digest)
    } catch (e) {
      if (statusOf(e) === 404) metrics.narinfoMisses.inc()
      throw e
    }
    metrics.narinfoHits.inc()
    // Signed as served, not stored: adding a key to the daemon signs every path at once.
    const signed = withSignatures(info, (opts.secretKeys ?? []).map((k) => signPathInfo(info, k, store.storeDir))) ?? info
    return servedNarInfo(narInfoFields(signed, store.storeDir), hashPart, info, compression)
  }

  /** `<hash>.ls`: the path's NAR listing, made from its Directories (no NAR is rendered). */
  async function serveListing(req: IncomingMessage, res: ServerResponse, hashPart: string): Promise<void> {
    const info = await pathInfo(hashDigest(hashPart))
    const signal = untilGone(res)
    // The first piece before the headers, so that a missing root Directory is still a clean 500; streamed after.
    const pieces = narListing(info.node, store, signal)
    const first = await pieces.next()
    res.writeHead(200, { 'Content-Type': 'application/json' })
    if (req.method === 'HEAD') {
      await pieces.return(undefined)
      return void res.end()
    }
    await pipeline(prepend(first, pieces), res, { signal })
  }

  function hashDigest(hashPart: string): Uint8Array {
    try {
      return nixbase32.decode(hashPart)
    } catch (e) {
      throw new ClientError(400, `${hashPart} is not a store path hash: ${message(e)}`)
    }
  }

  /** Aborted when the client goes away or the server shuts down: a render stops, pipeline's backpressure keeps memory flat meanwhile. */
  function untilGone(res: ServerResponse): AbortSignal {
    const gone = new AbortController()
    res.once('close', () => gone.abort(new Error('the client went away')))
    return AbortSignal.any([gone.signal, stopped])
  }

  async function pathInfo(digest: Uint8Array): Promise<PathInfo> {
    const info = await store.pathInfos.get(digest)
    if (!info?.narinfo) throw new ClientError(404, 'no such path in this binary cache')
    return info
  }

  async function serveNar(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    const wanted = parseNarFileName(name)
    // The uncompressed NAR stays served whatever the compression (clients keep narinfos for 30 days); other compressions are not made on request.
    if (!wanted || (wanted.compression !== 'none' && wanted.compression !== compression)) throw new ClientError(404, `no such NAR in this binary cache: ${name}`)
    const info = await pathInfo(wanted.digest)
    // The path's content changed since the narinfo was read: those bytes are gone.
    if (!sameNar(info, wanted.narSha256)) throw new ClientError(404, `no such NAR in this binary cache: ${name}`)
    // Compressed as it is sent: no known size, so no Range (Nix resumes only uncompressed NARs anyway).
    if (wanted.compression !== 'none') return sendCompressedNar(req, res, store, info, wanted.compression, stopped)
    const size = info.narinfo!.narSize
    const range = byteRange(req.headers.range, size)
    if (range === 'unsatisfiable') throw new ClientError(416, `the range ${req.headers.range} is not within the NAR's ${size} bytes`, { 'Content-Range': `bytes */${size}` })
    res.writeHead(range ? 206 : 200, { 'Content-Type': 'application/x-nix-nar', ...rangeHeaders(range, size) })
    if (req.method === 'HEAD') return void res.end()
    const signal = untilGone(res)
    metrics.narRendersInFlight.inc()
    res.once('close', () => metrics.narRendersInFlight.dec())
    // The signal on pipeline too: shutdown cuts a response whose client stopped reading, which no render step would notice.
    await pipeline(narBytes(info.node, store, range, signal), res, { signal })
  }

  function fail(req: IncomingMessage, res: ServerResponse, e: unknown): void {
    if (res.headersSent) {
      // Mid-NAR: the client sees a short body against Content-Length, never a complete wrong one.
      res.destroy()
      const path = loggedPath(req.url)
      if (!stopped.aborted && !res.writableFinished && !req.destroyed && !isPrematureClose(e)) log(`${req.method} ${path} failed mid-${routeOf(path) === 'nar' ? 'NAR' : 'response'}: ${message(e)}`)
      return
    }
    const status = statusOf(e)
    const line = failureLine(req.method, req.url, status, message(e))
    if (line) log(line)
    send(req, res, 'text/plain; charset=utf-8', `${message(e)}\n`, status, e instanceof ClientError ? e.headers : {})
  }
}

/** A 4xx for what the client asked wrongly or for what is absent; anything else is the store's own failure. */
function statusOf(e: unknown): number {
  if (e instanceof ClientError) return e.status
  if (e instanceof NotFoundError) return 404
  return 500
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/** `first` (already taken from `rest`) followed by the rest. */
async function* prepend<T>(first: IteratorResult<T>, rest: AsyncIterator<T>): AsyncGenerator<T> {
  if (first.done) return
  yield first.value
  for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value
}

function isPrematureClose(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | undefined)?.code === 'ERR_STREAM_PREMATURE_CLOSE'
}

function send(req: IncomingMessage, res: ServerResponse, type: string, body: string, status = 200, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) })
  res.end(req.method === 'HEAD' ? undefined : body)
}
