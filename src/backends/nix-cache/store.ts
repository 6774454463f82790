import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { abortTreeStage, commitTreeStage, stageTree, type TreeStage } from '../../castore/tree-stage.js'
import { bytesEqual } from '../../castore/digest.js'
import { InvalidInputError, NotFoundError, UnsupportedError } from '../../errors.js'
import type { NarFetchOptions, NarSource } from '../../store/capabilities.js'
import type { IngestResult } from '../../store/ingest-fs.js'
import { type NarInfoFields, parseNarInfo } from '../../store/narinfo.js'
import * as nixbase32 from '../../store/nixbase32.js'
import type { PathInfo } from '../../store/path-info.js'
import type { PathInfoService } from '../../store/path-info-service.js'
import { parseBasename } from '../../store/store-path.js'
import type { Store } from '../../store/store.js'
import type { CallOptions } from '../../util/call-options.js'
import { onInterrupt } from '../../util/interrupt.js'
import { type LocalStore, openLocalStore } from '../local/index.js'
import type { CacheUrl } from './cache-url.js'
import { FileTransport } from './file-transport.js'
import { fetchNarInto } from './nar-fetch.js'
import { type CacheTransport, TransientError, withRetries } from './transport.js'

/** More than any real narinfo or nix-cache-info (a few KiB): a text file is read whole, so it is bounded. */
const MAX_TEXT_FILE = 16 << 20

/**
 * A Nix binary cache opened as a store, read-only: a path's narinfo is
 * fetched when the path is first asked for, then its NAR, which is
 * ingested into a temporary local store (a temp folder, removed on close)
 * whose blobs and Directories serve the reads (`ls`, `cat`, `export-nar`,
 * `narinfo` on the cache, memory flat for any size). As a NarSource it
 * also hands narinfos and NARs to `copy`, which streams NARs straight into
 * the target's castore.
 */
export class NixCacheStore implements Store, NarSource {
  readonly pathInfos: PathInfoService
  private cacheInfo?: Promise<void>

  private constructor(
    readonly cache: CacheUrl,
    readonly storeDir: string,
    private readonly transport: CacheTransport,
    private readonly local: LocalStore,
    private readonly tempDir: string,
  ) {
    this.pathInfos = new NixCachePathInfoService(this)
  }

  static async open(cache: CacheUrl, storeDir: string, opts: { mustExist: boolean; tlsCa?: Buffer }): Promise<NixCacheStore> {
    // undici only for an HTTP cache: loading this backend costs 0.13 s of CPU without it, 0.31 s with it.
    const transport = cache.location.kind === 'file' ? new FileTransport(cache.location.dir) : new (await import('./http-transport.js')).HttpTransport(cache.location.base, opts.tlsCa)
    const tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-nix-cache-'))
    // An interrupted command exits without closing its stores: the folder goes all the same.
    onInterrupt(() => fs.rmSync(tempDir, { recursive: true, force: true }))
    const store = new NixCacheStore(cache, storeDir, transport, await openLocalStore(tempDir, storeDir), tempDir)
    if (opts.mustExist) await store.checkCacheInfo().catch(async (e) => {
      await store.close()
      throw e
    })
    return store
  }

  get blobs() {
    return this.local.blobs
  }

  get directories() {
    return this.local.directories
  }

  get sourceLabel(): string {
    return this.cache.display
  }

  /** `nix-cache-info`, read once: the cache exists, and is for this store dir (as Nix checks). */
  checkCacheInfo(opts: CallOptions = {}): Promise<void> {
    this.cacheInfo ??= (async () => {
      const text = await this.readText('nix-cache-info', opts)
      if (text === undefined) throw new NotFoundError(`no binary cache at ${this.cache.display} (it has no nix-cache-info)`)
      const storeDir = /^StoreDir: (.*)$/m.exec(text)?.[1]
      if (storeDir !== undefined && storeDir !== this.storeDir) {
        throw new InvalidInputError(`binary cache '${this.cache.display}' is for Nix stores with prefix '${storeDir}', not '${this.storeDir}'`)
      }
    })()
    this.cacheInfo.catch(() => (this.cacheInfo = undefined))
    return this.cacheInfo
  }

  async narInfo(storePathDigest: Uint8Array, opts: CallOptions = {}): Promise<NarInfoFields | undefined> {
    await this.checkCacheInfo(opts)
    const rel = `${nixbase32.encode(storePathDigest)}.narinfo`
    const text = await this.readText(rel, opts)
    if (text === undefined) return undefined
    let fields: NarInfoFields
    try {
      fields = parseNarInfo(text, this.storeDir)
    } catch (e) {
      throw new InvalidInputError(`${rel} in binary cache '${this.cache.display}': ${(e as Error).message}`, { cause: e })
    }
    if (!bytesEqual(parseBasename(fields.storePath.slice(this.storeDir.length + 1)).digest, storePathDigest)) {
      throw new InvalidInputError(`${rel} in binary cache '${this.cache.display}' describes another path, ${fields.storePath}`)
    }
    return fields
  }

  fetchInto(fields: NarInfoFields, stage: TreeStage, opts?: NarFetchOptions): Promise<{ info: PathInfo; ingested: IngestResult }> {
    return fetchNarInto(this.transport, this.cache.display, fields, stage, this.storeDir, opts)
  }

  /** Fetches a path into the temporary local store, once; its PathInfo, or undefined if the cache lacks it. */
  async fetchLocally(digest: Uint8Array, opts: CallOptions = {}): Promise<PathInfo | undefined> {
    const here = await this.local.pathInfos.get(digest)
    if (here) return here
    const fields = await this.narInfo(digest, opts)
    if (!fields) return undefined
    const stage = stageTree(this.local)
    try {
      const { info } = await this.fetchInto(fields, stage, opts)
      await commitTreeStage(stage)
      // Its references need not be here: this folder only serves what was read, the cache is the store.
      return await this.local.pathInfos.put(info)
    } catch (e) {
      await abortTreeStage(stage)
      throw e
    }
  }

  private async readText(rel: string, opts: CallOptions): Promise<string | undefined> {
    return withRetries(async () => {
      const file = await this.transport.open(rel, opts)
      if (!file) return undefined
      const parts: Buffer[] = []
      let size = 0
      try {
        for await (const c of file.body) {
          size += c.length
          if (size > MAX_TEXT_FILE) throw new InvalidInputError(`${rel} in binary cache '${this.cache.display}' is larger than ${MAX_TEXT_FILE} bytes`)
          parts.push(c)
        }
      } catch (e) {
        if (e instanceof InvalidInputError) throw e
        opts.signal?.throwIfAborted()
        throw new TransientError(`the download of '${rel}' was cut short: ${(e as Error).message}`, { cause: e })
      } finally {
        file.body.destroy()
      }
      return Buffer.concat(parts).toString('utf8')
    }, opts)
  }

  async close(): Promise<void> {
    await this.transport.close()
    await this.local.close()
    fs.rmSync(this.tempDir, { recursive: true, force: true })
  }
}

/** The cache's paths, each fetched (narinfo, then NAR) on first read; writing is refused: this side only reads. */
class NixCachePathInfoService implements PathInfoService {
  private readonly inFlight = new Map<string, Promise<PathInfo | undefined>>()

  constructor(private readonly store: NixCacheStore) {}

  get(digest: Uint8Array, opts?: CallOptions): Promise<PathInfo | undefined> {
    const key = nixbase32.encode(digest)
    let p = this.inFlight.get(key)
    if (!p) {
      p = this.store.fetchLocally(digest, opts).finally(() => this.inFlight.delete(key))
      this.inFlight.set(key, p)
    }
    return p
  }

  async put(): Promise<PathInfo> {
    throw new UnsupportedError(`binary cache '${this.store.sourceLabel}' is read-only here: copy from it (copy --from), not into it`)
  }

  // eslint-disable-next-line require-yield
  async *list(): AsyncIterable<PathInfo> {
    throw new UnsupportedError(`binary cache '${this.store.sourceLabel}' cannot list its paths: name them`)
  }
}
