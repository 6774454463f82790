import fsSync from 'node:fs'
import fs from 'node:fs/promises'
import { type BlobInfo, type BlobService, type BlobStage, type ByteSource, type Staging, abortableSource, iterateSource, verifiedBuffer, verifyBlob } from '../../castore/blob-service.js'
import { type B3Digest, b3, b3Hasher, requireDigestLength, toHex } from '../../castore/digest.js'
import { Batcher } from '../../util/batcher.js'
import { chunkStream } from '../../castore/chunker.js'
import type { ChunkMeta, LocalReads } from '../../castore/blob-service.js'
import { ChunkReader, type ChunkRef, PackWriter, readManifest, readPackedBlob } from './pack.js'
import type { ObjectGraph } from './object-graph.js'
import { callerInput, onFile } from './io-errors.js'
import type { LocalRoot } from './layout.js'
import { abortable } from '../../util/abortable.js'
import type { CallOptions } from '../../util/call-options.js'

const READ_CHUNK = 1 << 20
/** Blobs up to this size are read and written with one synchronous call. */
const SMALL_BLOB = 1 << 20
/** Bytes of a pack read at once when a whole blob is read (its chunks are mostly consecutive). */
const PACK_READ_AHEAD = 1 << 20
/** Blob sizes remembered at most (then forgotten all at once): a few MiB of memory. */
const MAX_KNOWN_SIZES = 1 << 16

/** A blob written to a temp file (or found already stored: no tmp). */
interface Written extends BlobInfo {
  tmp?: string
  /** For a pack: its chunk list, indexed once the pack is published. */
  chunks?: ChunkRef[]
}

export class LocalBlobService implements BlobService, Staging, LocalReads {
  readonly readsLocally = true
  /** Temp files made durable together, before they are renamed into place. */
  private readonly durable: Batcher<string>
  /** Renames made durable together (fsync of the directories renamed into). */
  private readonly named: Batcher<undefined>

  /**
   * Sizes of blobs this process stored or looked up, by hex digest, so the
   * size checks of a fresh import's Directories and PathInfo cost no
   * syscalls. Like the chunk index, forgotten after a sweep.
   */
  private readonly knownSizes = new Map<string, number>()

  /** `objects`: the store's object graph, whose chunk index dedups writes and finds chunks read by their own digest. */
  constructor(
    private readonly root: LocalRoot,
    private readonly objects: ObjectGraph,
  ) {
    this.durable = new Batcher((tmps) => root.syncFiles(tmps))
    this.named = new Batcher(() => root.sync())
    root.onSweep(() => this.knownSizes.clear())
  }

  private rememberSize(hex: string, size: number): void {
    if (this.knownSizes.size >= MAX_KNOWN_SIZES) this.knownSizes.clear()
    this.knownSizes.set(hex, size)
  }

  private path(d: B3Digest): string {
    return this.root.objectPath('blobs', toHex(d))
  }

  private readonly packPath = (hex: string) => this.root.packPath(hex)

  /** Where a written blob goes: a plain file, or a pack. */
  private finalPath(w: Written): string {
    return w.chunks ? this.packPath(toHex(w.digest)) : this.path(w.digest)
  }

  private async publish(w: Written): Promise<void> {
    await this.root.publish(w.tmp!, this.finalPath(w))
    if (w.chunks) this.objects.chunks.addPack(toHex(w.digest), w.chunks)
    this.rememberSize(toHex(w.digest), w.size)
  }

  /** Plain blob: its file size; pack: the sum of its chunks; chunk of a pack: its size in the index. Reads no data. */
  async size(d: B3Digest): Promise<number | undefined> {
    const hex = toHex(requireDigestLength(d))
    let size = this.knownSizes.get(hex)
    if (size !== undefined) return size
    const at = this.objects.locate(hex)
    size = at?.kind === 'plain' ? at.size : at?.kind === 'chunk' ? at.ref.size : at && readManifest(at.file, hex)?.reduce((sum, c) => sum + c.size, 0)
    if (size !== undefined) this.rememberSize(hex, size)
    return size
  }

  /** A blob's chunks: empty for a plain blob, undefined if absent. */
  async chunks(d: B3Digest): Promise<ChunkMeta[] | undefined> {
    requireDigestLength(d)
    const manifest = readManifest(this.packPath(toHex(d)), toHex(d))
    if (manifest) return manifest.map((c) => ({ digest: c.digest, size: c.size }))
    return fsSync.existsSync(this.path(d)) ? [] : undefined
  }

  /**
   * Plain blob, pack, or a chunk of a pack (readable by its digest too). No
   * exception when absent. A write session relies on what it found.
   */
  async has(d: B3Digest): Promise<boolean> {
    return this.storedAs(requireDigestLength(d)) !== undefined
  }

  /** The file holding `d` (recorded as relied on by the current write session), or undefined. `small`: see ObjectGraph.locate. */
  private storedAs(d: B3Digest, small = false): string | undefined {
    const file = this.objects.locate(toHex(d), small)?.file
    if (file) this.root.rely(file)
    return file
  }

  /** An aborted signal ends the read and closes its files, whether or not anyone reads on. */
  async open(d: B3Digest, opts?: CallOptions): Promise<AsyncIterable<Uint8Array> | undefined> {
    requireDigestLength(d)
    opts?.signal?.throwIfAborted()
    const data = await this.read(d)
    return data && opts?.signal ? abortable(data, opts.signal) : data
  }

  private async read(d: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined> {
    // Small blobs (most files of a tree) with synchronous open/fstat/read/close:
    // microseconds, where the async route costs a thread-pool round trip each.
    let fd: number
    try {
      fd = fsSync.openSync(this.path(d), 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return this.openChunked(d)
      throw e
    }
    let size: number
    try {
      size = fsSync.fstatSync(fd).size
    } catch (e) {
      fsSync.closeSync(fd)
      throw e
    }
    // readWhole closes fd.
    if (size <= SMALL_BLOB) return verifiedBuffer(d, readWhole(fd, size, this.path(d)))
    const fh = await fs.open(this.path(d), 'r').finally(() => fsSync.closeSync(fd))
    return verifyBlob(d, readChunks(fh, this.path(d)))
  }

  /** A packed blob, chunk by chunk; or a single chunk asked for by its own digest. */
  private openChunked(d: B3Digest): AsyncIterable<Uint8Array> | undefined {
    const manifest = readManifest(this.packPath(toHex(d)), toHex(d))
    // Each chunk is checked before it leaves; the whole-blob check proves the manifest right.
    if (manifest) return verifyBlob(d, readPackedBlob(this.packPath, manifest, PACK_READ_AHEAD))
    const chunk = this.objects.chunks.get(d)
    if (!chunk) return undefined
    const reader = new ChunkReader(this.packPath, true)
    try {
      return verifiedBuffer(d, reader.read(chunk))
    } finally {
      reader.close()
    }
  }

  /** A single blob, durable when this returns: temp file, fsync, rename, directory fsync. */
  async put(src: ByteSource, opts?: CallOptions): Promise<BlobInfo> {
    const w = await this.write(abortableSource(src, opts))
    if (w.tmp) {
      try {
        // Concurrent puts (a daemon's clients) share their fsyncs: group commit.
        await this.durable.add(w.tmp)
        await this.root.commit(async () => {
          await this.publish(w)
          await this.named.add(undefined)
        })
      } catch (e) {
        await this.root.discard(w.tmp)
        throw e
      }
    }
    return { digest: w.digest, size: w.size }
  }

  /**
   * Many blobs made durable together: temp files are written without
   * fsync, and commit() flushes them all at once (one syncfs instead of an
   * fsync per file), then renames them into place and syncs the renames.
   * Nothing is visible under a final name before its bytes are on disk.
   */
  stage(): BlobStage {
    const pending = new Map<string, Written>()
    /** Small blobs written to temp files by this stage: a copy of one (empty files, duplicates) is not written again. */
    const written = new Set<string>()
    const inFlight = new Set<Promise<Written>>()
    const keep = async (w: Written) => {
      const key = toHex(w.digest)
      if (w.tmp && pending.has(key)) await this.root.discard(w.tmp)
      else if (w.tmp) pending.set(key, w)
    }
    return {
      put: async (src, opts) => {
        const p = this.write(abortableSource(src, opts), written)
        inFlight.add(p)
        try {
          const w = await p
          await keep(w)
          return { digest: w.digest, size: w.size }
        } finally {
          inFlight.delete(p)
        }
      },
      commit: async () => {
        const staged = [...pending.values()]
        pending.clear()
        written.clear()
        if (staged.length === 0) return
        try {
          await this.root.syncFiles(staged.map((w) => w.tmp!))
          await this.root.commit(async () => {
            for (const w of staged) await this.publish(w)
            await this.root.sync()
          })
        } catch (e) {
          // abort() no longer sees these: remove what was not renamed into place.
          for (const w of staged) await this.root.discard(w.tmp!)
          throw e
        }
      },
      abort: async () => {
        await Promise.allSettled(inFlight)
        for (const w of pending.values()) await this.root.discard(w.tmp!)
        pending.clear()
        written.clear()
      },
    }
  }

  /**
   * Writes `src` to a temp file while hashing it (not yet fsynced): up to
   * SMALL_BLOB as a plain file, larger as a pack of content-defined chunks.
   * Content already in the store is not written again: for a buffer that
   * is known before writing, for a stream only afterwards. On failure
   * nothing is left in tmp/. `written`: a stage's small blobs in temp files
   * (hex); one already there is not written again (no tmp returned).
   */
  private async write(src: ByteSource, written?: Set<string>): Promise<Written> {
    await this.root.init()
    return this.writeTemp(src, written)
  }

  private async writeTemp(src: ByteSource, written?: Set<string>): Promise<Written> {
    if (src instanceof Uint8Array && src.length <= SMALL_BLOB) {
      const digest = b3(src)
      const hex = toHex(digest)
      if (written?.has(hex)) return { digest, size: src.length }
      // Contents this small are never a pack of their own: a plain file, or a chunk of some pack.
      if (this.storedAs(digest, true)) {
        this.rememberSize(hex, src.length)
        return { digest, size: src.length }
      }
      const tmp = this.root.tempPath()
      try {
        fsSync.writeFileSync(tmp, src, { flag: 'wx', mode: 0o444 })
      } catch (e) {
        // A full disk leaves a partial file behind.
        await this.root.discard(tmp)
        throw e
      }
      written?.add(hex)
      return { digest, size: src.length, tmp }
    }
    // A stream: look at its first SMALL_BLOB + 1 bytes to know which kind it is.
    // A failed read of the input is the caller's, not an I/O error of the store.
    const it = callerInput(iterateSource(src))[Symbol.asyncIterator]()
    const head: Uint8Array[] = []
    let headSize = 0
    let ended = false
    while (headSize <= SMALL_BLOB) {
      const r = await it.next()
      if (r.done) {
        ended = true
        break
      }
      head.push(r.value)
      headSize += r.value.length
    }
    if (ended) return this.writeTemp(Buffer.concat(head), written)
    async function* all() {
      yield* head
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value
    }
    return this.writePack(all())
  }

  private async writePack(src: AsyncIterable<Uint8Array>): Promise<Written> {
    const h = b3Hasher()
    let size = 0
    async function* tap() {
      for await (const c of src) {
        h.update(c)
        size += c.length
        yield c
      }
    }
    const tmp = this.root.tempPath()
    const pack = await PackWriter.create(tmp).catch(async (e) => {
      await this.root.discard(tmp)
      throw e
    })
    let digest: B3Digest
    let chunks: ChunkRef[]
    try {
      for await (const chunk of chunkStream(tap())) await pack.add(chunk, this.objects.chunks)
      digest = h.digest()
      chunks = await pack.finish(toHex(digest))
    } catch (e) {
      await pack.abort()
      await this.root.discard(tmp)
      throw e
    }
    // Chunks borrowed from older packs: those packs must outlive this session's commit.
    for (const c of chunks) if (c.pack !== toHex(digest)) this.root.rely(this.packPath(c.pack))
    if (await this.has(digest)) {
      await this.root.discard(tmp)
      return { digest, size }
    }
    return { digest, size, tmp, chunks }
  }
}

/** Reads all `size` bytes of an open file and closes it. */
function readWhole(fd: number, size: number, file: string): Buffer {
  try {
    const buf = Buffer.allocUnsafe(size)
    let got = 0
    while (got < size) {
      const n = fsSync.readSync(fd, buf, got, size - got, null)
      if (n === 0) break
      got += n
    }
    return buf.subarray(0, got)
  } catch (e) {
    throw onFile(e, file)
  } finally {
    fsSync.closeSync(fd)
  }
}

/** Reads a file in chunks, the next read already in flight while a chunk is used. */
async function* readChunks(fh: fs.FileHandle, file: string): AsyncGenerator<Uint8Array> {
  const read = async () => {
    const buf = Buffer.allocUnsafe(READ_CHUNK)
    const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, null).catch((e) => Promise.reject(onFile(e, file)))
    return buf.subarray(0, bytesRead)
  }
  let next: Promise<Buffer> | undefined = read()
  try {
    for (;;) {
      const chunk = await next
      next = undefined
      if (chunk.length === 0) return
      next = read()
      yield chunk
    }
  } finally {
    await next?.catch(() => {})
    await fh.close()
  }
}
