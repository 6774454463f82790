import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { compressor } from '../codecs/index.js'
import { BackendError, UsageError } from '../errors.js'
import { renderNar } from '../store/nar/render.js'
import type { NarInfoFields } from '../store/narinfo.js'
import type { PathInfo } from '../store/path-info.js'
import type { Store } from '../store/store.js'
import { SERVED_COMPRESSIONS, type ServedCompression, narUrl } from './nar-url.js'

/** `--http-compression`'s value, checked. */
export function parseServedCompression(flag: string): ServedCompression {
  const c = SERVED_COMPRESSIONS.find((s) => s === flag)
  if (!c) throw new UsageError(`--http-compression ${JSON.stringify(flag)}: want one of ${SERVED_COMPRESSIONS.join(', ')}`)
  return c
}

/**
 * Fails now, with the reason, if `compression` cannot run here (its program
 * is missing), rather than on the first NAR a client asks for, whose
 * headers would already be sent.
 */
export async function checkCompressor(compression: ServedCompression): Promise<void> {
  try {
    await pipeline(Readable.from([Buffer.from('nix-archive-1')]), compressor(compression), async (out: AsyncIterable<Buffer>) => {
      for await (const _ of out);
    })
  } catch (e) {
    throw new BackendError(`--http-compression ${compression}: ${(e as Error).message}`, { cause: e })
  }
}

/**
 * The narinfo the cache serves for a path: its URL names the NAR in the
 * cache's compression. A compressed NAR is compressed as it is sent, so its
 * hash and size are not known beforehand: FileHash and FileSize are left
 * out (Nix 2.8 checks only NarHash and NarSize).
 */
export function servedNarInfo(fields: NarInfoFields, hashPart: string, info: PathInfo, compression: ServedCompression): NarInfoFields {
  const url = narUrl(hashPart, info.narinfo!.narSha256, compression)
  if (compression === 'none') return { ...fields, url }
  return { ...fields, url, compression, fileHash: undefined, fileSize: undefined }
}

/**
 * Sends the path's NAR compressed as it is rendered: no Content-Length
 * (chunked), flat memory through the pipeline's backpressure. A client that
 * goes away, or `stopped` (shutdown), stops the render and the compressor
 * (its program killed).
 */
export async function sendCompressedNar(req: IncomingMessage, res: ServerResponse, store: Store, info: PathInfo, compression: ServedCompression, stopped: AbortSignal): Promise<void> {
  res.writeHead(200, { 'Content-Type': 'application/x-nix-nar' })
  if (req.method === 'HEAD') return void res.end()
  const gone = new AbortController()
  res.once('close', () => gone.abort(new Error('the client went away')))
  const signal = AbortSignal.any([gone.signal, stopped])
  await pipeline(renderNar(info.node, store, { signal }), compressor(compression), res, { signal })
}
