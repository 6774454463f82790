/**
 * Large blobs are stored as packs of content-defined chunks:
 * `blobs/b3/<hex2>/<hex>.pack` holds the chunks that were new to the store
 * when the blob was written (each deflated when that pays), followed by a
 * manifest listing every chunk of the blob in order, each either in this
 * pack or in an older one. One file per blob, so chunking never multiplies
 * the number of files; a blob that differs a little from a stored one
 * costs only its new chunks.
 *
 *   pack     = payload* manifest u32le(len(manifest)) "TVXPACK1"
 *   manifest = u32le(count) entry*
 *   entry    = digest[32] u32le(size) u32le(stored) u64le(offset) u8(codec) u8(where) [pack digest[32] if where = 1]
 *   codec    = 0 raw | 1 deflate-raw;  where = 0 this pack | 1 the pack of another blob
 */
import fsSync from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import zlib from 'node:zlib'
import { type B3Digest, b3, b3Display, bytesEqual, toHex } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'

export const PACK_SUFFIX = '.pack'
const MAGIC = Buffer.from('TVXPACK1')
const TRAILER = 4 + MAGIC.length
/** Deflate a chunk only if a 4 KiB sample of it shrinks below this fraction. */
const COMPRESS_BELOW = 0.9
const SAMPLE = 4096

export interface ChunkRef {
  digest: B3Digest
  size: number
  /** Hex digest of the blob whose pack holds the bytes. */
  pack: string
  offset: number
  stored: number
  codec: 0 | 1
}

function encodeManifest(entries: ChunkRef[], self: string): Buffer {
  const parts: Buffer[] = []
  const count = Buffer.alloc(4)
  count.writeUInt32LE(entries.length)
  parts.push(count)
  for (const e of entries) {
    const other = e.pack !== self
    const b = Buffer.alloc(32 + 4 + 4 + 8 + 2 + (other ? 32 : 0))
    b.set(e.digest, 0)
    b.writeUInt32LE(e.size, 32)
    b.writeUInt32LE(e.stored, 36)
    b.writeBigUInt64LE(BigInt(e.offset), 40)
    b[48] = e.codec
    b[49] = other ? 1 : 0
    if (other) b.write(e.pack, 50, 'hex')
    parts.push(b)
  }
  return Buffer.concat(parts)
}

function decodeManifest(buf: Buffer, self: string, file: string): ChunkRef[] {
  const bad = () => new IntegrityError(`pack ${file} has a corrupt manifest`)
  if (buf.length < 4) throw bad()
  const count = buf.readUInt32LE(0)
  const out: ChunkRef[] = []
  let p = 4
  for (let i = 0; i < count; i++) {
    if (p + 50 > buf.length) throw bad()
    const where = buf[p + 49]
    const e: ChunkRef = {
      digest: Uint8Array.from(buf.subarray(p, p + 32)),
      size: buf.readUInt32LE(p + 32),
      stored: buf.readUInt32LE(p + 36),
      offset: Number(buf.readBigUInt64LE(p + 40)),
      codec: buf[p + 48] === 1 ? 1 : 0,
      pack: self,
    }
    p += 50
    if (where === 1) {
      if (p + 32 > buf.length) throw bad()
      e.pack = buf.toString('hex', p, p + 32)
      p += 32
    }
    out.push(e)
  }
  return out
}

/** The chunk list of a pack file, or undefined if there is no such file. */
export function readManifest(file: string, self: string): ChunkRef[] | undefined {
  let fd: number
  try {
    fd = fsSync.openSync(file, 'r')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
  try {
    const size = fsSync.fstatSync(fd).size
    const trailer = Buffer.alloc(TRAILER)
    if (size < TRAILER || fsSync.readSync(fd, trailer, 0, TRAILER, size - TRAILER) !== TRAILER || !trailer.subarray(4).equals(MAGIC)) {
      throw new IntegrityError(`pack ${file} is truncated or not a pack`)
    }
    const len = trailer.readUInt32LE(0)
    if (len > size - TRAILER) throw new IntegrityError(`pack ${file} is truncated`)
    const manifest = Buffer.alloc(len)
    fsSync.readSync(fd, manifest, 0, len, size - TRAILER - len)
    return decodeManifest(manifest, self, file)
  } finally {
    fsSync.closeSync(fd)
  }
}

/** Reads one chunk from its pack, inflates it, and checks it against its digest. */
export function readChunk(packPath: (hex: string) => string, ref: ChunkRef): Buffer {
  const file = packPath(ref.pack)
  const fd = fsSync.openSync(file, 'r')
  let stored: Buffer
  try {
    stored = Buffer.allocUnsafe(ref.stored)
    if (fsSync.readSync(fd, stored, 0, ref.stored, ref.offset) !== ref.stored) throw new IntegrityError(`pack ${file} is truncated`)
  } finally {
    fsSync.closeSync(fd)
  }
  let data: Buffer
  try {
    data = ref.codec === 1 ? zlib.inflateRawSync(stored) : stored
  } catch (e) {
    throw new IntegrityError(`chunk ${b3Display(ref.digest)} in ${file} does not inflate`, { cause: e })
  }
  if (data.length !== ref.size || !bytesEqual(b3(data), ref.digest)) {
    throw new IntegrityError(`chunk ${b3Display(ref.digest)} in ${file} is corrupt`)
  }
  return data
}

/**
 * Where every chunk stored in a published pack lives, for deduplication
 * and for reading chunks by digest. Loaded once per process by scanning
 * the packs' manifests; packs published by this process are added as
 * they appear (packs of other processes meanwhile only cost dedup).
 */
export class ChunkIndex {
  private readonly map = new Map<string, ChunkRef>()
  private loaded = false

  constructor(private readonly blobsDir: string) {}

  private load(): void {
    if (this.loaded) return
    this.loaded = true
    let shards: string[]
    try {
      shards = fsSync.readdirSync(this.blobsDir)
    } catch {
      return
    }
    for (const shard of shards) {
      for (const name of fsSync.readdirSync(path.join(this.blobsDir, shard))) {
        if (!name.endsWith(PACK_SUFFIX)) continue
        const self = name.slice(0, -PACK_SUFFIX.length)
        this.addPack(self, readManifest(path.join(this.blobsDir, shard, name), self) ?? [])
      }
    }
  }

  get(digest: Uint8Array): ChunkRef | undefined {
    this.load()
    return this.map.get(toHex(digest))
  }

  /** Records the chunks a published pack holds itself. */
  addPack(self: string, entries: ChunkRef[]): void {
    for (const e of entries) if (e.pack === self && !this.map.has(toHex(e.digest))) this.map.set(toHex(e.digest), e)
  }
}

function maybeCompress(chunk: Uint8Array): { bytes: Uint8Array; codec: 0 | 1 } {
  const sample = zlib.deflateRawSync(chunk.subarray(0, SAMPLE), { level: 1 })
  if (sample.length >= Math.min(chunk.length, SAMPLE) * COMPRESS_BELOW) return { bytes: chunk, codec: 0 }
  const packed = zlib.deflateRawSync(chunk, { level: 1 })
  return packed.length < chunk.length * COMPRESS_BELOW ? { bytes: packed, codec: 1 } : { bytes: chunk, codec: 0 }
}

/** Writes one pack: new chunks appended, known ones referenced. */
export class PackWriter {
  private readonly entries: ChunkRef[] = []
  private readonly own = new Map<string, ChunkRef>()
  private offset = 0
  static readonly SELF = ''

  private constructor(private readonly fh: fs.FileHandle) {}

  static async create(file: string): Promise<PackWriter> {
    return new PackWriter(await fs.open(file, fsSync.constants.O_CREAT | fsSync.constants.O_EXCL | fsSync.constants.O_WRONLY, 0o444))
  }

  async add(chunk: Uint8Array, index: ChunkIndex): Promise<void> {
    const digest = b3(chunk)
    const known = index.get(digest) ?? this.own.get(toHex(digest))
    if (known) {
      this.entries.push({ ...known, digest })
      return
    }
    const { bytes, codec } = maybeCompress(chunk)
    await this.fh.write(bytes)
    const ref: ChunkRef = { digest, size: chunk.length, pack: PackWriter.SELF, offset: this.offset, stored: bytes.length, codec }
    this.offset += bytes.length
    this.own.set(toHex(digest), ref)
    this.entries.push(ref)
  }

  /** Writes the manifest and closes; returns the entries with `self` as their own pack's name. */
  async finish(self: string): Promise<ChunkRef[]> {
    const entries = this.entries.map((e) => (e.pack === PackWriter.SELF ? { ...e, pack: self } : e))
    const manifest = encodeManifest(entries, self)
    const trailer = Buffer.alloc(4)
    trailer.writeUInt32LE(manifest.length)
    await this.fh.write(Buffer.concat([manifest, trailer, MAGIC]))
    await this.fh.close()
    return entries
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => {})
  }
}
