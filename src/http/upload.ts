import { metrics } from './metrics.js'
import { failureLine } from './request-log.js'
import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import {
  AlreadyExistsError,
  ConflictError,
  IntegrityError,
  InvalidInputError,
  MissingDataError,
  NotFoundError,
  UsageError,
  isNoSpace,
} from '../errors.js'
import { publishPathInfo } from '../ops/publish.js'
import type { B3Digest } from '../castore/digest.js'
import { commitTreeStage } from '../castore/tree-stage.js'
import { withStage } from '../ops/register.js'
import { inWriteSession } from '../store/capabilities.js'
import { ingestNar } from '../store/nar/ingest.js'
import { parseNarInfo, parseSha256, pathInfoFromNarInfo } from '../store/narinfo.js'
import * as nixbase32 from '../store/nixbase32.js'
import { HASH_PART_LEN, parseBasename } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { formatSize } from '../util/size.js'
import { sameNar } from './nar-url.js'
import { type PendingLimits, type PendingNar, PendingNars } from './pending-nars.js'
import { compressionOfExtension, uploadedNar } from './uploaded-nar.js'

export interface UploadOptions {
  /** A NAR larger than this is refused (413), as the daemon's CalculateNAR refuses one. */
  maxNarSize: number
  pending?: PendingLimits
}

/** What to answer: a status and a one-line reason (empty on success). */
export interface Reply {
  status: number
  body: string
}

export interface Uploads {
  /** Whether a request is part of an upload (and needs upload credentials): every PUT, and the HEAD Nix sends before a NAR. */
  handles(method: string | undefined, path: string): boolean
  /**
   * Serves an upload request, reading its body. Never a 5xx (Nix 2.8 answers
   * one by resending an empty body and hanging): a store failure is a 4xx
   * with the reason, logged. Undefined when the client went away mid-upload.
   */
  serve(req: IncomingMessage, path: string): Promise<Reply | undefined>
}

/** `nar/<FileHash in nixbase32><ext>`: the name Nix gives an uploaded NAR. */
const NAR_FILE = /^\/nar\/([0-9a-z]{52})(\.nar(?:\.[a-z0-9]+)?)$/
const NARINFO = new RegExp(`^/([0-9a-z]{${HASH_PART_LEN}})\\.narinfo$`)
const LISTING = new RegExp(`^/[0-9a-z]{${HASH_PART_LEN}}\\.ls$`)
/** A narinfo is a few hundred bytes; 1 MiB holds thousands of references. */
const MAX_NARINFO = 1 << 20
/** A `.ls` listing is read and dropped (Nix 2.8 never reads one back); bounded all the same. */
const MAX_LISTING = 256 << 20
/**
 * Pending NARs: a client uploads a NAR and its narinfo back to back. Their
 * trees are unreferenced until then, so gc may take them once its grace
 * period (10 minutes by default) is over: an entry goes before that, so a
 * HEAD never vouches for a tree that is gone.
 */
const DEFAULT_PENDING: PendingLimits = { maxEntries: 10_000, ttlMs: 5 * 60_000 }

/** A request refused with a 4xx: the client's mistake, not logged. */
class Refused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/**
 * The write side of Nix's `http://` binary cache protocol, as `nix copy
 * --to http://…` speaks it: `PUT /nar/<filehash>.nar<ext>` (checked
 * against the hash its name gives, parsed by the strict NAR reader and
 * ingested into the castore as it streams), `HEAD` of that name (200 only
 * for a NAR pending here, so Nix uploads whatever we lack), then `PUT
 * /<hash>.narinfo`, which publishes the PathInfo once the NAR it names is
 * in and agrees with it. `stopped` aborts uploads in flight.
 */
export function uploads(store: Store, opts: UploadOptions, log: (line: string) => void, stopped: AbortSignal): Uploads {
  const pending = new PendingNars(opts.pending ?? DEFAULT_PENDING)
  return {
    handles: (method, path) => method === 'PUT' || (method === 'HEAD' && NAR_FILE.test(path)),
    async serve(req, path) {
      const kind = uploadKind(path)
      try {
        await route(req, path)
        if (req.method === 'PUT') metrics.uploads.inc({ kind, status: '200' })
        return { status: 200, body: '' }
      } catch (e) {
        // Mid-upload, the client is gone: nobody to answer, nothing to log.
        if (req.destroyed && !req.complete) return undefined
        const { status, logged } = refusal(e, stopped)
        const reason = e instanceof Error ? e.message : String(e)
        // Every refused upload is one line; the store's own failures say so.
        const line = failureLine(req.method, req.url, status, logged ? `store failure: ${reason}` : reason)
        if (line) log(line)
        if (req.method === 'PUT') metrics.uploads.inc({ kind, status: String(status) })
        return { status, body: `${reason}\n` }
      }
    },
  }

  async function route(req: IncomingMessage, path: string): Promise<void> {
    const nar = NAR_FILE.exec(path)
    if (req.method === 'HEAD') {
      if (!(await stillPending(path.slice('/nar/'.length)))) throw new Refused(404, 'no such NAR pending here')
      return
    }
    if (nar) return putNar(req, nar[1]!, nar[2]!)
    const narinfo = NARINFO.exec(path)
    if (narinfo) return putNarInfo(req, narinfo[1]!)
    if (LISTING.test(path)) return void (await readBody(req, MAX_LISTING, 'listing', false))
    throw new Refused(path === '/nix-cache-info' ? 403 : 404, `nothing can be uploaded to ${path}`)
  }

  async function putNar(req: IncomingMessage, hash: string, ext: string): Promise<void> {
    const compression = compressionOfExtension(ext)
    if (!compression) throw new Refused(400, `unknown NAR file extension ${ext}`)
    const fileSha256 = decodeHash(hash)
    const sha = createHash('sha256')
    /** Off once the file turns out to be the NAR itself: the NAR's own SHA-256 is then the file's. */
    let hashFile = true
    let fileSize = 0
    let narSize = 0
    const file = tap(req.iterator({ destroyOnReturn: false }), (c) => {
      if (hashFile) sha.update(c)
      fileSize += c.length
    })
    const nar = tap(uploadedNar(file, compression, () => (hashFile = false)), (c) => {
      narSize += c.length
      if (narSize > opts.maxNarSize) throw new Refused(413, `the NAR is larger than --max-nar-size (${formatSize(opts.maxNarSize)})`)
    })
    const entry = await withStage(store, async (stage) => {
      const ingested = await ingestNar(nar, stage, { signal: stopped })
      // The reader saw the NAR's end (and refuses anything after it), so the whole file went through the hash.
      const got = hashFile ? sha.digest() : Buffer.from(ingested.narSha256)
      if (!got.equals(fileSha256)) throw new Refused(400, `the uploaded file's SHA-256 is ${nixbase32.encode(got)}, not the ${hash} its name says: damaged or tampered`)
      await commitTreeStage(stage)
      return { root: ingested.root, narSha256: ingested.narSha256, narSize: ingested.narSize, fileSize }
    })
    metrics.uploadBytes.inc({}, entry.fileSize)
    pending.add(`${hash}${ext}`, entry)
  }

  async function putNarInfo(req: IncomingMessage, hashPart: string): Promise<void> {
    const fields = parseNarInfo((await readBody(req, MAX_NARINFO, 'narinfo', true)).toString('utf8'), store.storeDir)
    const base = fields.storePath.slice(store.storeDir.length + 1)
    if (!base.startsWith(hashPart)) throw new Refused(400, `the narinfo is for ${fields.storePath}, not for ${hashPart}`)
    const narSha256 = parseSha256(fields.narHash)
    const stored = await store.pathInfos.get(parseBasename(base).digest, { signal: stopped })
    if (stored) {
      // Idempotent, as Nix's own addToStore: the same content again changes nothing.
      if (sameNar(stored, narSha256)) return
      throw new AlreadyExistsError(`${fields.storePath} is already in this cache with another NAR hash; a stored path is never replaced`)
    }
    const nar = fields.url.startsWith('nar/') ? await stillPending(fields.url.slice('nar/'.length)) : undefined
    if (!nar) throw new Refused(400, `the NAR ${fields.url} was not uploaded here (or too long ago): upload it before its narinfo`)
    if (nar.narSize !== fields.narSize || !Buffer.from(nar.narSha256).equals(narSha256)) {
      const had = `sha256:${nixbase32.encode(nar.narSha256)} (${nar.narSize} bytes)`
      throw new Refused(400, `NarHash mismatch: the narinfo says ${fields.narHash} (${fields.narSize} bytes), the uploaded ${fields.url} is ${had}`)
    }
    const info = pathInfoFromNarInfo(fields, nar.root, store.storeDir)
    // The NAR hash was computed here, from the bytes ingested: no render to check a CA. A write
    // session keeps gc from sweeping the tree between the admission check and the put.
    await inWriteSession(store, (store) => publishPathInfo(store, info, { narComputedHere: true, signal: stopped }))
  }

  /** The pending NAR of that name, if its tree's root is still stored (a gc with a short grace may have taken it: then it is forgotten, and uploaded again). */
  async function stillPending(name: string): Promise<PendingNar | undefined> {
    const nar = pending.get(name)
    if (!nar) return undefined
    const root = nar.root
    const stored = root.kind === 'symlink' || (root.kind === 'file' ? await store.blobs.has(root.digest) : await hasDirectory(store, root.digest))
    if (!stored) pending.delete(name)
    return stored ? nar : undefined
  }
}

/** Whether `d` is stored: its checked bytes where the service offers them (a root of thousands of entries is decoded once, by the narinfo's admission check, not here too). */
async function hasDirectory(store: Store, d: B3Digest): Promise<boolean> {
  const { directories } = store
  return (await (directories.getEncoded ? directories.getEncoded(d) : directories.get(d))) !== undefined
}

/** The request body, at most `max` bytes (413 beyond, refused up front when Content-Length says so); dropped unless `keep`. */
async function readBody(req: IncomingMessage, max: number, what: string, keep: boolean): Promise<Buffer> {
  const tooLarge = () => new Refused(413, `the ${what} is larger than ${formatSize(max)}`)
  if (Number(req.headers['content-length']) > max) throw tooLarge()
  const chunks: Buffer[] = []
  let size = 0
  // Not destroyed when left early: the connection stays up for the answer.
  for await (const chunk of req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > max) throw tooLarge()
    if (keep) chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** `src` with `see` called on each chunk as it passes (hashing, counting, a limit that throws). */
async function* tap(src: AsyncIterable<Uint8Array>, see: (chunk: Uint8Array) => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of src) {
    see(chunk)
    yield chunk
  }
}

function decodeHash(hash: string): Uint8Array {
  try {
    return nixbase32.decode(hash)
  } catch (e) {
    throw new Refused(400, `${hash} is not a SHA-256 in nixbase32: ${(e as Error).message}`)
  }
}

function uploadKind(path: string): string {
  if (NAR_FILE.test(path)) return 'nar'
  if (NARINFO.test(path)) return 'narinfo'
  if (LISTING.test(path)) return 'ls'
  return 'other'
}

/** The 4xx for a failed upload, and whether it is the server's own failure (logged) rather than the client's. */
function refusal(e: unknown, stopped: AbortSignal): { status: number; logged: boolean } {
  if (e instanceof Refused) return { status: e.status, logged: false }
  if (stopped.aborted) return { status: 400, logged: false }
  if (e instanceof AlreadyExistsError) return { status: 409, logged: false }
  // A sweep took what the upload relied on: trying again succeeds.
  if (e instanceof ConflictError) return { status: 409, logged: true }
  if (isNoSpace(e)) return { status: 413, logged: true }
  const clients = [InvalidInputError, IntegrityError, MissingDataError, NotFoundError, UsageError]
  return { status: 400, logged: !clients.some((c) => e instanceof c) }
}
