import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { NotFoundError } from '../errors.js'
import { renderNar } from '../store/nar/render.js'
import { narInfoFields, renderNarInfo } from '../store/narinfo.js'
import * as nixbase32 from '../store/nixbase32.js'
import type { PathInfo } from '../store/path-info.js'
import { HASH_PART_LEN } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { BASIC_CHALLENGE, type Credentials } from './auth.js'
import { narUrl, parseNarFileName, sameNar } from './nar-url.js'
import { type UploadOptions, uploads } from './upload.js'

export type Log = (line: string) => void

export interface CacheOptions {
  /** `Priority:` of nix-cache-info: lower wins among a client's substituters. */
  priority: number
  /** Accept `nix copy --to` uploads (PUT); without it a PUT is 403. */
  upload?: UploadOptions
  /** Basic credentials required for uploads, and for reads too when `private`; /nix-cache-info never needs them. */
  credentials?: Credentials
  private?: boolean
}

/** A request the server answers with a 4xx: the client's mistake, never logged. */
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

/**
 * The read side of Nix's `http://` binary cache protocol over a Store:
 * `/nix-cache-info`, `/<hash>.narinfo` and `/nar/<hash>-<narhash>.nar`,
 * the NAR rendered from the castore as the client reads it. `stopped`
 * aborts the renders in flight (the server is shutting down).
 */
export function cacheHandler(store: Store, opts: CacheOptions, log: Log, stopped: AbortSignal) {
  const cacheInfo = `StoreDir: ${store.storeDir}\nWantMassQuery: 1\nPriority: ${opts.priority}\n`
  const upload = opts.upload && uploads(store, opts.upload, log, stopped)
  return (req: IncomingMessage, res: ServerResponse): void => {
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
    let digest: Uint8Array
    try {
      digest = nixbase32.decode(hashPart)
    } catch (e) {
      throw new ClientError(400, `${hashPart} is not a store path hash: ${message(e)}`)
    }
    const info = await pathInfo(digest)
    return { ...narInfoFields(info, store.storeDir), url: narUrl(hashPart, info.narinfo!.narSha256) }
  }

  async function pathInfo(digest: Uint8Array): Promise<PathInfo> {
    const info = await store.pathInfos.get(digest)
    if (!info?.narinfo) throw new ClientError(404, 'no such path in this binary cache')
    return info
  }

  async function serveNar(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    const wanted = parseNarFileName(name)
    if (!wanted) throw new ClientError(404, `no such NAR in this binary cache: ${name} (compressed NARs are not served yet)`)
    const info = await pathInfo(wanted.digest)
    // The path's content changed since the narinfo was read: those bytes are gone.
    if (!sameNar(info, wanted.narSha256)) throw new ClientError(404, `no such NAR in this binary cache: ${name}`)
    res.writeHead(200, { 'Content-Type': 'application/x-nix-nar', 'Content-Length': info.narinfo!.narSize })
    if (req.method === 'HEAD') return void res.end()
    // A client that goes away stops the render; pipeline's backpressure keeps memory flat.
    const gone = new AbortController()
    res.once('close', () => gone.abort(new Error('the client went away')))
    const signal = AbortSignal.any([gone.signal, stopped])
    // The signal on pipeline too: shutdown cuts a response whose client stopped reading, which no render step would notice.
    await pipeline(renderNar(info.node, store, { signal }), res, { signal })
  }

  function fail(req: IncomingMessage, res: ServerResponse, e: unknown): void {
    if (res.headersSent) {
      // Mid-NAR: the client sees a short body against Content-Length, never a complete wrong one.
      res.destroy()
      if (!stopped.aborted && !res.writableFinished && !req.destroyed && !isPrematureClose(e)) log(`${req.method} ${req.url} failed mid-NAR: ${message(e)}`)
      return
    }
    const status = statusOf(e)
    if (status >= 500) log(`${req.method} ${req.url} failed: ${message(e)}`)
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

function isPrematureClose(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | undefined)?.code === 'ERR_STREAM_PREMATURE_CLOSE'
}

function send(req: IncomingMessage, res: ServerResponse, type: string, body: string, status = 200, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) })
  res.end(req.method === 'HEAD' ? undefined : body)
}
