import fsSync, { constants } from 'node:fs'
import fs from 'node:fs/promises'
import { type BlobInfo, type BlobService, type BlobStage, type ByteSource, verifiedBuffer, verifyBlob } from '../../castore/blob-service.js'
import { type B3Digest, b3, b3Hasher, toHex } from '../../castore/digest.js'
import { Batcher } from '../../util/batcher.js'
import type { LocalRoot } from './layout.js'

const READ_CHUNK = 1 << 20
/** Blobs up to this size are read and written with one synchronous call. */
const SMALL_BLOB = 1 << 20

/** A blob written to a temp file (or found already stored: no tmp). */
interface Written extends BlobInfo {
  tmp?: string
}

export class LocalBlobService implements BlobService {
  /** Temp files made durable together, before they are renamed into place. */
  private readonly durable: Batcher<string>
  /** Renames made durable together (fsync of the directories renamed into). */
  private readonly named: Batcher<undefined>

  constructor(private readonly root: LocalRoot) {
    this.durable = new Batcher((tmps) => root.syncFiles(tmps))
    this.named = new Batcher(() => root.sync())
  }

  private path(d: B3Digest): string {
    return this.root.objectPath('blobs', toHex(d))
  }

  /** A stat without an exception for absent blobs (the common answer while copying). */
  async has(d: B3Digest): Promise<boolean> {
    return fsSync.existsSync(this.path(d))
  }

  async open(d: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined> {
    // Small blobs (most files of a tree) with synchronous open/fstat/read/close:
    // microseconds, where the async route costs a thread-pool round trip each.
    let fd: number
    try {
      fd = fsSync.openSync(this.path(d), 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
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
    if (size <= SMALL_BLOB) return verifiedBuffer(d, readWhole(fd, size))
    const fh = await fs.open(this.path(d), 'r').finally(() => fsSync.closeSync(fd))
    return verifyBlob(d, readChunks(fh))
  }

  /** A single blob, durable when this returns: temp file, fsync, rename, directory fsync. */
  async put(src: ByteSource): Promise<BlobInfo> {
    const w = await this.write(src)
    if (w.tmp) {
      // Concurrent puts (a daemon's clients) share their fsyncs: group commit.
      await this.durable.add(w.tmp)
      await this.root.publish(w.tmp, this.path(w.digest))
      await this.named.add(undefined)
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
    const inFlight = new Set<Promise<Written>>()
    const keep = async (w: Written) => {
      const key = toHex(w.digest)
      if (w.tmp && pending.has(key)) await this.root.discard(w.tmp)
      else if (w.tmp) pending.set(key, w)
    }
    return {
      put: async (src) => {
        const p = this.write(src)
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
        if (staged.length === 0) return
        await this.root.syncFiles(staged.map((w) => w.tmp!))
        for (const w of staged) await this.root.publish(w.tmp!, this.path(w.digest))
        await this.root.sync()
      },
      abort: async () => {
        await Promise.allSettled(inFlight)
        for (const w of pending.values()) await this.root.discard(w.tmp!)
        pending.clear()
      },
    }
  }

  /**
   * Writes `src` to a temp file while hashing it (not yet fsynced).
   * Content already in the store is not written again: for a buffer that
   * is known before writing, for a stream only afterwards.
   */
  private async write(src: ByteSource): Promise<Written> {
    await this.root.init()
    if (src instanceof Uint8Array) {
      const digest = b3(src)
      if (await this.has(digest)) return { digest, size: src.length }
      const tmp = this.root.tempPath()
      if (src.length <= SMALL_BLOB) fsSync.writeFileSync(tmp, src, { flag: 'wx', mode: 0o444 })
      else await writeFile(tmp, [src])
      return { digest, size: src.length, tmp }
    }
    const h = b3Hasher()
    let size = 0
    const tmp = this.root.tempPath()
    async function* tap() {
      for await (const c of src as AsyncIterable<Uint8Array>) {
        h.update(c)
        size += c.length
        yield c
      }
    }
    await writeFile(tmp, tap())
    const digest = h.digest()
    if (await this.has(digest)) {
      await this.root.discard(tmp)
      return { digest, size }
    }
    return { digest, size, tmp }
  }
}

async function writeFile(file: string, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
  const fh = await fs.open(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o444)
  // One write in flight while the next chunk is produced (read, hashed).
  let writing: Promise<unknown> = Promise.resolve()
  try {
    for await (const c of chunks) {
      await writing
      writing = fh.write(c)
    }
    await writing
  } catch (e) {
    await writing.catch(() => {})
    await fh.close()
    await fs.rm(file, { force: true })
    throw e
  }
  await fh.close()
}

/** Reads all `size` bytes of an open file and closes it. */
function readWhole(fd: number, size: number): Buffer {
  try {
    const buf = Buffer.allocUnsafe(size)
    let got = 0
    while (got < size) {
      const n = fsSync.readSync(fd, buf, got, size - got, null)
      if (n === 0) break
      got += n
    }
    return buf.subarray(0, got)
  } finally {
    fsSync.closeSync(fd)
  }
}

/** Reads a file in chunks, the next read already in flight while a chunk is used. */
async function* readChunks(fh: fs.FileHandle): AsyncGenerator<Uint8Array> {
  const read = async () => {
    const buf = Buffer.allocUnsafe(READ_CHUNK)
    const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, null)
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
