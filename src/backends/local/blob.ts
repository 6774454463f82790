import fsSync, { constants } from 'node:fs'
import fs from 'node:fs/promises'
import { type BlobInfo, type BlobService, type BlobStage, type ByteSource, iterateSource, verifyBlob } from '../../castore/blob-service.js'
import { type B3Digest, b3, b3Hasher, toHex } from '../../castore/digest.js'
import { exists, type LocalRoot } from './layout.js'

const READ_CHUNK = 1 << 20
const SMALL_BLOB = 256 * 1024

/** A written temp file: its digest and where it waits. */
interface Staged extends BlobInfo {
  tmp?: string
}

export class LocalBlobService implements BlobService {
  constructor(private readonly root: LocalRoot) {}

  private path(d: B3Digest): string {
    return this.root.objectPath('blobs', toHex(d))
  }

  has(d: B3Digest): Promise<boolean> {
    return exists(this.path(d))
  }

  async open(d: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined> {
    const p = this.path(d)
    // Small blobs (most files of a tree) in one synchronous read: microseconds,
    // where the async route costs three thread-pool round trips per file.
    const st = fsSync.statSync(p, { throwIfNoEntry: false })
    if (!st) return undefined
    if (st.size <= SMALL_BLOB) return verifyBlob(d, iterateSource(fsSync.readFileSync(p)))
    let fh: fs.FileHandle
    try {
      fh = await fs.open(p, 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw e
    }
    return verifyBlob(d, readChunks(fh))
  }

  async put(src: ByteSource): Promise<BlobInfo> {
    const s = await this.write(src)
    if (s.tmp) await this.root.publish(s.tmp, this.path(s.digest))
    return { digest: s.digest, size: s.size }
  }

  stage(): BlobStage {
    const pending = new Map<string, Staged>()
    const all: Promise<Staged>[] = []
    return {
      put: async (src) => {
        const p = this.write(src)
        all.push(p)
        const s = await p
        const key = toHex(s.digest)
        if (s.tmp && pending.has(key)) await fs.rm(s.tmp, { force: true })
        else if (s.tmp) pending.set(key, s)
        return { digest: s.digest, size: s.size }
      },
      commit: async () => {
        for (const s of pending.values()) await this.root.publish(s.tmp!, this.path(s.digest))
        pending.clear()
        await this.root.sync()
      },
      abort: async () => {
        // Wait for writes still in flight, then drop every temp file.
        const settled = await Promise.allSettled(all)
        for (const r of settled) if (r.status === 'fulfilled' && r.value.tmp) await fs.rm(r.value.tmp, { force: true })
        pending.clear()
      },
    }
  }

  /**
   * Writes `src` to a fsynced temp file while hashing it. Content already
   * in the store is not written again: for a buffer that is known before
   * writing, for a stream only afterwards (the temp is dropped).
   */
  private async write(src: ByteSource): Promise<Staged> {
    await this.root.init()
    if (src instanceof Uint8Array) {
      const digest = b3(src)
      if (await this.has(digest)) return { digest, size: src.length }
      const tmp = this.root.tempPath()
      await writeSynced(tmp, [src])
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
    await writeSynced(tmp, tap())
    const digest = h.digest()
    if (await this.has(digest)) {
      await fs.rm(tmp, { force: true })
      return { digest, size }
    }
    return { digest, size, tmp }
  }
}

async function writeSynced(file: string, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
  const fh = await fs.open(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, 0o444)
  try {
    for await (const c of chunks) await fh.write(c)
    await fh.sync()
  } catch (e) {
    await fh.close()
    await fs.rm(file, { force: true })
    throw e
  }
  await fh.close()
}

async function* readChunks(fh: fs.FileHandle): AsyncGenerator<Uint8Array> {
  try {
    for (;;) {
      const buf = Buffer.allocUnsafe(READ_CHUNK)
      const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, null)
      if (bytesRead === 0) return
      yield buf.subarray(0, bytesRead)
    }
  } finally {
    await fh.close()
  }
}
