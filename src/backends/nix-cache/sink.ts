import { createHash } from 'node:crypto'
import fs from 'node:fs'
import { createWriteStream } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { WRITABLE, type WritableCompression, compressor, isWritable, narFileExtension } from '../../codecs/index.js'
import { BackendError, IntegrityError, InvalidInputError, NotFoundError, UsageError, systemMessage } from '../../errors.js'
import type { NarSink, NarSinkCapable, NarSinkOptions, NarSinkPut } from '../../store/capabilities.js'
import * as nixbase32 from '../../store/nixbase32.js'
import { narInfoFields, renderNarInfo } from '../../store/narinfo.js'
import { type PathInfo, storePathOf } from '../../store/path-info.js'
import { type SecretKey, parseSecretKey, signPathInfo, withSignatures } from '../../store/signing.js'
import { absolute } from '../../store/store-path.js'
import type { Store } from '../../store/store.js'
import type { CallOptions } from '../../util/call-options.js'
import type { CacheUrl } from './cache-url.js'
import type { CacheWriter } from './cache-writer.js'
import { FolderCacheWriter, tempIn } from './folder-writer.js'

/** What the URL's parameters ask of a writer (Nix's binary cache store settings). */
export interface SinkSettings {
  /** `?compression=` (default xz, as Nix). */
  compression: WritableCompression
  /** `?secret-key=FILE`: each narinfo written gets this key's signature. */
  keys: SecretKey[]
  /** `?write-nar-listing=true`: a `<hash>.ls` beside each narinfo, as Nix writes it. */
  listing: boolean
}

/** The settings in a cache URL's parameters; bad ones are one error line. */
export function sinkSettings(params: URLSearchParams): SinkSettings {
  const named = params.get('compression') ?? 'xz'
  const compression = named === '' ? 'none' : named
  if (!isWritable(compression)) throw new UsageError(`cannot write ${JSON.stringify(compression)} compression to a binary cache; ?compression= takes ${WRITABLE.join(', ')}`)
  const keyFile = params.get('secret-key')
  return { compression, keys: keyFile ? [parseSecretKey(readSecretKeyFile(keyFile))] : [], listing: params.get('write-nar-listing') === 'true' }
}

function readSecretKeyFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    if (err.code === 'ENOENT') throw new NotFoundError(`cannot read the secret key file ${file} (?secret-key=): it does not exist`, { cause: e })
    throw new BackendError(`cannot read the secret key file ${file} (?secret-key=): ${systemMessage(err)}`, { cause: e })
  }
}

/** The sink of a cache URL: its writer (folder or HTTP, whose undici is loaded only then; `tlsCa` trusted for https) and its settings, read when first used. */
export async function openNarSink(cache: CacheUrl, storeDir: string, tlsCa?: Buffer): Promise<CacheNarSink> {
  const writer = cache.location.kind === 'file' ? new FolderCacheWriter(cache.location.dir) : new (await import('./http-writer.js')).HttpCacheWriter(cache.location.base, tlsCa)
  return new CacheNarSink(writer, storeDir, () => sinkSettings(cache.params))
}

/** `store` (a binary cache opened as a store) with the cache's NarSink, closed with it. */
export async function withNarSink<S extends Store>(store: S, cache: CacheUrl, storeDir: string, tlsCa?: Buffer): Promise<S & NarSinkCapable> {
  const narSink = await openNarSink(cache, storeDir, tlsCa)
  const close = store.close.bind(store)
  return Object.assign(store, {
    narSink,
    close: async () => {
      await narSink.close()
      await close()
    },
  })
}

/**
 * Writes paths into a Nix binary cache as `nix copy --to` does: the NAR
 * compressed into `nar/<file hash><ext>` (kept if the cache has it), then
 * the narinfo, last, with the path's signatures and the URL's key's. The
 * NAR is spooled to a file while its SHA-256 and size are taken (the name
 * is the compressed file's hash; an HTTP PUT sends its length first), so
 * memory stays flat whatever its size. `nix-cache-info` is created on first
 * use if the cache lacks it, as Nix does.
 */
export class CacheNarSink implements NarSink {
  private ready: Promise<SinkSettings> | undefined

  constructor(
    private readonly writer: CacheWriter,
    private readonly storeDir: string,
    private readonly settings: () => SinkSettings,
  ) {}

  async has(storePathDigest: Uint8Array, o: CallOptions = {}): Promise<boolean> {
    await this.init(o.signal)
    return this.writer.exists(`${nixbase32.encode(storePathDigest)}.narinfo`, o.signal)
  }

  async putPath(info: PathInfo, nar: () => AsyncIterable<Uint8Array>, o: NarSinkOptions = {}): Promise<NarSinkPut> {
    const { compression, keys, listing } = await this.init(o.signal)
    const ni = info.narinfo
    const storePath = absolute(storePathOf(info), this.storeDir)
    if (!ni) throw new IntegrityError(`path '${storePath}' has no NAR hash and size to write into a narinfo`)
    const hashPart = nixbase32.encode(storePathOf(info).digest)
    // Nix writes the listing first, the narinfo last: a listing alone names no path a reader would trust.
    if (listing && o.listing) {
      let text = ''
      for await (const piece of o.listing()) text += piece
      await this.writer.putText(`${hashPart}.ls`, text, 'application/json', o.signal)
    }
    const tmp = tempIn(await this.writer.spoolDir())
    try {
      const narHash = createHash('sha256')
      const fileHash = createHash('sha256')
      let narSize = 0
      let fileSize = 0
      await pipeline(
        async function* () {
          for await (const c of nar()) {
            narHash.update(c)
            narSize += c.length
            yield c
          }
        },
        compressor(compression),
        async function* (compressed: AsyncIterable<Buffer>) {
          for await (const c of compressed) {
            fileHash.update(c)
            fileSize += c.length
            o.onBytes?.(c.length)
            yield c
          }
        },
        createWriteStream(tmp.file, { flags: 'wx' }),
        { signal: o.signal },
      )
      // Nothing is published for a path whose NAR is not the one its PathInfo records.
      if (narSize !== ni.narSize || !narHash.digest().equals(ni.narSha256)) {
        throw new IntegrityError(`the NAR of '${storePath}' does not match its recorded NAR hash and size (${narSize} bytes, recorded ${ni.narSize})`)
      }
      const fileHash32 = nixbase32.encode(fileHash.digest())
      const url = `nar/${fileHash32}${narFileExtension(compression)}`
      let written = 0
      if (!(await this.writer.exists(url, o.signal))) {
        await this.writer.putFile(url, tmp.file, fileSize, 'application/x-nix-nar', o.signal)
        written = fileSize
      }
      const signed = withSignatures(info, keys.map((k) => signPathInfo(info, k, this.storeDir))) ?? info
      const fields = { ...narInfoFields(signed, this.storeDir), url, compression, fileHash: `sha256:${fileHash32}`, fileSize }
      await this.writer.putText(`${hashPart}.narinfo`, renderNarInfo(fields), 'text/x-nix-narinfo', o.signal)
      return { url, fileSize, written }
    } finally {
      await fs.promises.rm(tmp.file, { force: true })
      tmp.forget()
    }
  }

  async close(): Promise<void> {
    await this.writer.close()
  }

  /** Reads the settings, then checks `nix-cache-info` (creating it if absent), once. */
  private init(signal?: AbortSignal): Promise<SinkSettings> {
    this.ready ??= (async () => {
      const settings = this.settings()
      const info = await this.writer.readText('nix-cache-info', signal)
      if (info === undefined) {
        // A cache that refuses it is one error naming nix-cache-info and the reason (Nix: "does not appear to be a binary cache").
        await this.writer.putText('nix-cache-info', `StoreDir: ${this.storeDir}\n`, 'text/x-nix-cache-info', signal)
      } else {
        const dir = /^StoreDir: (.*)$/m.exec(info)?.[1]
        if (dir !== undefined && dir !== this.storeDir) throw new InvalidInputError(`binary cache '${this.writer.display}' is for Nix stores with prefix '${dir}', not '${this.storeDir}'`)
      }
      return settings
    })()
    return this.ready
  }
}

