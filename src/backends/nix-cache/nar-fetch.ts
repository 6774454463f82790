import { createHash } from 'node:crypto'
import { pipeline, Readable } from 'node:stream'
import { bytesEqual } from '../../castore/digest.js'
import type { TreeStage } from '../../castore/tree-stage.js'
import { decompressor } from '../../codecs/index.js'
import { IntegrityError, InvalidInputError, NotFoundError } from '../../errors.js'
import type { NarFetchOptions } from '../../store/capabilities.js'
import type { IngestResult } from '../../store/ingest-fs.js'
import { ingestNar } from '../../store/nar/ingest.js'
import { type NarInfoFields, parseSha256, pathInfoFromNarInfo } from '../../store/narinfo.js'
import * as nixbase32 from '../../store/nixbase32.js'
import type { PathInfo } from '../../store/path-info.js'
import { type CacheTransport, transientReads, withRetries } from './transport.js'

/**
 * Streams the NAR a narinfo names into `stage`: the file as sent (its
 * FileHash and FileSize checked as it passes), decompressed by its bytes
 * (codecs), parsed by the strict NAR reader and ingested, then checked
 * against NarHash and NarSize. A dropped connection or a 5xx starts the
 * whole NAR again; blobs and Directories a failed attempt staged are whole
 * files and folders of this very NAR, so what the caller commits is never
 * part of something else.
 */
export function fetchNarInto(
  transport: CacheTransport,
  cacheLabel: string,
  fields: NarInfoFields,
  stage: TreeStage,
  storeDir: string,
  opts: NarFetchOptions = {},
): Promise<{ info: PathInfo; ingested: IngestResult }> {
  const refuse = (why: string) => new IntegrityError(`cannot add path '${fields.storePath}' from binary cache '${cacheLabel}': ${why}`)
  return withRetries(async () => {
    const file = await transport.open(fields.url, opts)
    if (!file) throw new NotFoundError(`file '${fields.url}' does not exist in binary cache '${cacheLabel}'`)
    const what = `the download of '${fields.url}'`
    // An uncompressed NAR in a folder is read in reused buffers straight into the ingest (it copies what it keeps): no stream between.
    const raw = (fields.compression === 'none' || fields.compression === '') && file.reusing
    const decoded = raw ? undefined : decompressor(fields.compression)
    const checked = (body: AsyncIterable<Uint8Array>) => checkedFile(transientReads(body, what, opts.signal), fields, refuse, opts.onBytes)
    // Any failure destroys both ends: the download stops, a decompressing child is killed.
    if (decoded) pipeline(Readable.from(checked(file.body)), decoded, () => {})
    try {
      const ingested = decoded ? await ingestNar(decoded, stage, opts) : await ingestNar(checked(file.reusing!()), stage, { ...opts, reusedBuffers: true })
      if (ingested.narSize !== fields.narSize) throw refuse(`its NAR has ${ingested.narSize} bytes, not the NarSize ${fields.narSize} of its narinfo`)
      if (!bytesEqual(ingested.narSha256, parseSha256(fields.narHash))) {
        throw refuse(`NAR hash mismatch: the narinfo says ${fields.narHash}, the NAR has sha256:${nixbase32.encode(ingested.narSha256)}`)
      }
      return { info: pathInfoFromNarInfo(fields, ingested.root, storeDir), ingested }
    } catch (e) {
      // Bad data from the cache (a decoder's or the NAR reader's complaint) is said with the path it concerns.
      if (e instanceof InvalidInputError && !opts.signal?.aborted) throw refuse(e.message)
      throw e
    } finally {
      decoded?.destroy()
      file.body.destroy()
    }
  }, opts)
}

/** The file's bytes, passed on as they come; at its end, its SHA-256 and size must be what the narinfo says (where it says). */
async function* checkedFile(
  body: AsyncIterable<Uint8Array>,
  fields: NarInfoFields,
  refuse: (why: string) => Error,
  onBytes?: (n: number) => void,
): AsyncGenerator<Uint8Array> {
  const want = fileHashToCheck(fields)
  const sha = want && createHash('sha256')
  let size = 0
  for await (const c of body) {
    sha?.update(c)
    size += c.length
    onBytes?.(c.length)
    yield c
  }
  if (fields.fileSize !== undefined && size !== fields.fileSize) throw refuse(`file '${fields.url}' has ${size} bytes, not the FileSize ${fields.fileSize} of its narinfo`)
  if (want && !bytesEqual(sha!.digest(), want)) throw refuse(`file '${fields.url}' does not have the FileHash ${fields.fileHash} of its narinfo`)
}

/**
 * The FileHash the file is checked against as it passes, if the narinfo
 * gives one. Not for an uncompressed NAR whose FileHash is its NarHash (as
 * Nix writes them): the file is the NAR, the NAR reader refuses anything
 * after its end, and the NarHash check covers those very bytes.
 */
function fileHashToCheck(fields: NarInfoFields): Uint8Array | undefined {
  if (!fields.fileHash?.startsWith('sha256:')) return undefined
  const want = parseSha256(fields.fileHash)
  const raw = fields.compression === 'none' || fields.compression === ''
  return raw && bytesEqual(want, parseSha256(fields.narHash)) ? undefined : want
}
