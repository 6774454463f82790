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
 *   manifest = u32le(count) entry* [seal]
 *   entry    = digest[32] u32le(size) u32le(stored) u64le(offset) u8(codec) u8(where) [pack digest[32] if where = 1]
 *   codec    = 0 raw | 1 deflate-raw;  where = 0 this pack | 1 the pack of another blob
 *   seal     = "B3S1" BLAKE3(blob digest[32] || u32le(count) entry*)
 *
 * The seal (added by writers since issue 14; readers before it ignore
 * bytes after the entries, so either reads the other's packs) says the
 * writer computed the blob's digest from the very bytes it chunked, and
 * guards the manifest against bit-rot: a sealed manifest whose chunks
 * each match their own digest is the blob, so its reader skips the
 * second, whole-blob BLAKE3. An unsealed one is still checked whole.
 */
import fsSync from 'node:fs'
import fs from 'node:fs/promises'
import zlib from 'node:zlib'
import { type B3Digest, b3, b3Display, b3Hasher, b3Matches, bytesEqual, toHex } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import { SHARED_SPAN, type SpanChunk, type SpanResult, checkAll, leaseCheckBuffer } from '../../castore/check-thread.js'
import { BufferPool } from '../../util/buffer-pool.js'
import { onFile, readIfPresent } from './io-errors.js'
import { PACK_SUFFIX } from './layout.js'

/** Re-exported: tests that damage packs find them by it. */
export { PACK_SUFFIX }
const MAGIC = Buffer.from('TVXPACK1')
const TRAILER = 4 + MAGIC.length
/** A chunk is kept deflated only if that shrinks it below this fraction. */
const COMPRESS_BELOW = 0.9
/**
 * Payload bytes gathered before one write. Two such buffers are held per
 * blob being written, so per concurrent upload of a daemon: at 1 MiB, 40
 * stalled Puts took the daemon from ~150 to 230 MiB; 256 KiB already makes
 * a write cheap next to the chunking and hashing of those bytes.
 */
const WRITE_BATCH = 256 << 10
/**
 * Bytes written between two fdatasyncs started in the background while a
 * pack is written: the disk then writes it back while the rest is read
 * and hashed, and the commit's fsync finds little left to flush (it was
 * ~0.3 s of a 256 MiB import, on a disk that writes ~450 MB/s).
 */
const SYNC_EVERY = 16 << 20
/** Bytes of a chunk whose entropy decides whether to try deflating it. */
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

/** Where the store holds a chunk already (ChunkIndex): what a pack being written references instead of storing it again. */
export interface ChunkLookup {
  get(digest: Uint8Array): ChunkRef | undefined
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

const SEAL_TAG = Buffer.from('B3S1')
const SEAL_LEN = SEAL_TAG.length + 32

/** The seal of a manifest's entries: binds them to the blob (`self`, hex) they make up. */
function sealOf(entries: Uint8Array, self: string): Buffer {
  const h = b3Hasher()
  h.update(Buffer.from(self, 'hex'))
  h.update(entries)
  return Buffer.concat([SEAL_TAG, h.digest()])
}

/** A manifest as stored: its entries (without the seal), and whether a seal vouched for them. */
interface Manifest {
  entries: Buffer
  sealed: boolean
}

const corruptManifest = (file: string) => new IntegrityError(`pack ${file} has a corrupt manifest`)

/**
 * Splits a manifest into entries and seal, and checks the seal. The
 * entries must end exactly at the seal or at the end (no writer put
 * anything else there), so a flipped count or tag is an error too, not
 * a manifest taken for unsealed.
 */
function parseManifest(raw: Buffer, self: string, file: string): Manifest {
  if (raw.length < 4) throw corruptManifest(file)
  const count = raw.readUInt32LE(0)
  let p = 4
  let i = 0
  for (; i < count && p + 50 <= raw.length; i++) p += raw[p + 49] === 1 ? 82 : 50
  // Every entry the count promises, each whole (so decodeEntries cannot fail on these bytes).
  if (i !== count) throw corruptManifest(file)
  if (p === raw.length) return { entries: raw, sealed: false }
  const entries = raw.subarray(0, raw.length - SEAL_LEN)
  if (p !== entries.length || !bytesEqual(raw.subarray(entries.length), sealOf(entries, self))) throw corruptManifest(file)
  return { entries, sealed: true }
}

function decodeManifest(buf: Buffer, self: string, file: string): ChunkRef[] {
  return [...decodeEntries(buf, self, file, true)]
}

/**
 * The manifest's entries, decoded one at a time as they are asked for.
 * `copy`: each digest in memory of its own, for entries that are kept (an
 * index); else a view of the manifest's bytes, for one pass over it.
 */
function* decodeEntries(buf: Buffer, self: string, file: string, copy = false): Generator<ChunkRef> {
  const bad = () => corruptManifest(file)
  if (buf.length < 4) throw bad()
  const count = buf.readUInt32LE(0)
  let p = 4
  for (let i = 0; i < count; i++) {
    if (p + 50 > buf.length) throw bad()
    const where = buf[p + 49]
    const e: ChunkRef = {
      digest: copy ? Uint8Array.from(buf.subarray(p, p + 32)) : buf.subarray(p, p + 32),
      size: buf.readUInt32LE(p + 32),
      stored: buf.readUInt32LE(p + 36),
      // u64le, below 2^53 (a file offset): two halves, no BigInt per chunk.
      offset: buf.readUInt32LE(p + 44) * 0x1_0000_0000 + buf.readUInt32LE(p + 40),
      codec: buf[p + 48] === 1 ? 1 : 0,
      pack: self,
    }
    p += 50
    if (where === 1) {
      if (p + 32 > buf.length) throw bad()
      e.pack = buf.toString('hex', p, p + 32)
      p += 32
    }
    yield e
  }
}

/** The chunk list of a pack file, or undefined if there is no such file. */
export function readManifest(file: string, self: string): ChunkRef[] | undefined {
  const raw = readManifestBytes(file)
  return raw && decodeManifest(parseManifest(raw, self, file).entries, self, file)
}

/**
 * A pack's chunk list for one pass over it, decoded as it is walked: a
 * 1 GiB blob lists ~16,000 chunks, which as objects cost ~5 MB of heap per
 * reader (per concurrent download of a binary cache), where the raw
 * manifest is ~50 bytes a chunk. Its layout is checked whole now
 * (parseManifest), so a corrupt manifest still fails before any byte is read. `sealed`: see the seal above.
 */
export function manifestEntries(file: string, self: string): (Iterable<ChunkRef> & { sealed: boolean }) | undefined {
  const raw = readManifestBytes(file)
  if (!raw) return undefined
  const { entries, sealed } = parseManifest(raw, self, file)
  return { sealed, [Symbol.iterator]: () => decodeEntries(entries, self, file) }
}

/** The manifest bytes of a pack file, or undefined if there is no such file. */
function readManifestBytes(file: string): Buffer | undefined {
  return readIfPresent(file, (fd) => {
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
      return manifest
    } catch (e) {
      throw onFile(e, file)
    }
  })
}

/**
 * Reads chunks from pack files, keeping each pack open while it is in use
 * (at most `maxOpen` of them: then all are closed and reopened as needed).
 * `verify` re-hashes each chunk.
 */
export class ChunkReader {
  private readonly fds = new Map<string, number>()

  constructor(
    private readonly packPath: (hex: string) => string,
    private readonly verify: boolean,
    private readonly maxOpen = Infinity,
  ) {}

  read(ref: ChunkRef): Buffer {
    const file = this.packPath(ref.pack)
    let fd = this.fds.get(file)
    if (fd === undefined) {
      if (this.fds.size >= this.maxOpen) this.close()
      fd = fsSync.openSync(file, 'r')
      this.fds.set(file, fd)
    }
    const stored = Buffer.allocUnsafe(ref.stored)
    if (readFull(fd, stored, ref.offset, file) !== ref.stored) throw new IntegrityError(`pack ${file} is truncated`)
    return unpack(stored, ref, file, this.verify)
  }

  close(): void {
    for (const fd of this.fds.values()) fsSync.closeSync(fd)
    this.fds.clear()
  }
}

/** A stored chunk's bytes, inflated and checked (its digest only when `verify`). */
function unpack(stored: Buffer, ref: ChunkRef, file: string, verify: boolean): Buffer {
  let data: Buffer
  try {
    data = ref.codec === 1 ? zlib.inflateRawSync(stored) : stored
  } catch (e) {
    throw new IntegrityError(`chunk ${b3Display(ref.digest)} in ${file} does not inflate`, { cause: e })
  }
  if (data.length !== ref.size || (verify && !b3Matches(data, ref.digest))) throw corruptChunk(ref, file)
  return data
}

function corruptChunk(ref: ChunkRef, file: string): IntegrityError {
  return new IntegrityError(`chunk ${b3Display(ref.digest)} in ${file} is corrupt`)
}

/** Chunks stored back to back in one pack, read with one call. */
interface Span {
  pack: string
  start: number
  length: number
  refs: ChunkRef[]
}

/** The manifest's chunks grouped into spans of up to `max` bytes, one span at a time. */
function* spans(manifest: Iterable<ChunkRef>, max: number): Generator<Span> {
  let last: Span | undefined
  for (const r of manifest) {
    if (last && last.pack === r.pack && last.start + last.length === r.offset && last.length + r.stored <= max) {
      last.length += r.stored
      last.refs.push(r)
    } else {
      if (last) yield last
      last = { pack: r.pack, start: r.offset, length: r.stored, refs: [r] }
    }
  }
  if (last) yield last
}

/**
 * A whole packed blob, chunk by chunk: consecutive chunks come out of one
 * synchronous read of up to `readAhead` bytes (from the page cache a read
 * takes microseconds, where a thread-pool round trip per read cost more
 * CPU than it overlapped). Each chunk is checked against its own digest
 * before any of its bytes is yielded (a whole-blob check alone would let a
 * corrupt file out up to its last byte); the caller's whole-blob check
 * (or the manifest's seal) proves the manifest lists the right chunks.
 * Every span gets a fresh buffer, as what is yielded may be kept by the
 * consumer (a socket's write queue), unless `lend`: then one buffer is
 * read into again and again, and a piece is valid only until the
 * consumer asks for the next one (it must be done with it by then, e.g.
 * a write it waited for). A fresh buffer per 256 KiB span cost more CPU
 * than reading and hashing it (page faults of new memory, then GC): 290
 * vs 45 ms per 256 MiB. Lent 'shared', that buffer is one shared with
 * the check thread where one is free (check-thread.ts): spans of up to
 * SHARED_SPAN, of which raw ones are read and checked half on each thread.
 * The packs are open only while the generator runs.
 */
export function* readPackedBlob(packPath: (hex: string) => string, manifest: Iterable<ChunkRef>, readAhead: number, lend: boolean | 'shared' = false): Generator<Uint8Array> {
  const fds = new Map<string, number>()
  // Lent, the buffer may be one shared with the check thread: the two halves of each span are then read and checked at once.
  const lease = lend === 'shared' ? leaseCheckBuffer() : undefined
  const max = lease ? SHARED_SPAN : readAhead
  let lent: Buffer | undefined
  try {
    for (const sp of spans(manifest, max)) {
      const file = packPath(sp.pack)
      let fd = fds.get(file)
      if (fd === undefined) {
        fd = fsSync.openSync(file, 'r')
        fds.set(file, fd)
      }
      const shared = lease !== undefined && sp.length <= lease.buf.length
      // One size for every span buffer: glibc reuses freed blocks of one size, where varying sizes fragment the heap.
      const size = Math.max(max, sp.length)
      const whole = shared ? lease.buf : !lend ? Buffer.allocUnsafe(size) : lent && lent.length >= size ? lent : (lent = Buffer.allocUnsafe(size))
      const buf = whole.subarray(0, sp.length)
      const readOwn = (into: Buffer, pos: number) => readFull(fd, into, pos, file)
      const truncated = () => new IntegrityError(`pack ${file} is truncated`)
      if (sp.refs.every((r) => r.codec === 0 && r.stored === r.size)) {
        // Stored raw (incompressible data): the span is the bytes, one piece once all its chunks check; fewer, larger pieces downstream.
        const { got, bad } = shared ? lease.readChecked(fd, sp.start, sp.length, sp.refs, readOwn) : readThenCheck(buf, sp.start, sp.refs, readOwn)
        if (got !== sp.length) throw truncated()
        if (bad >= 0) {
          // The chunks before the bad one are good: out they go, as they would one by one.
          const good = sp.refs.slice(0, bad).reduce((n, r) => n + r.size, 0)
          if (good > 0) yield buf.subarray(0, good)
          throw corruptChunk(sp.refs[bad]!, file)
        }
        yield buf
      } else {
        if (readOwn(buf, sp.start) !== sp.length) throw truncated()
        for (const r of sp.refs) yield unpack(buf.subarray(r.offset - sp.start, r.offset - sp.start + r.stored), r, file, true)
      }
    }
  } finally {
    lease?.release()
    for (const fd of fds.values()) fsSync.closeSync(fd)
  }
}

/** readOwn into `buf`, then checkAll if it read all (see Lease.readChecked): the same on the main thread alone. */
function readThenCheck(buf: Buffer, pos: number, chunks: readonly SpanChunk[], readOwn: (into: Buffer, pos: number) => number): Omit<SpanResult, 'shared'> {
  const got = readOwn(buf, pos)
  return { got, bad: got === buf.length ? checkAll(buf, chunks) : -1 }
}

/**
 * Reads `buf.length` bytes of a regular file at `pos`, fewer only at its
 * end (a short read is the end: no second read to hear that).
 */
export function readFull(fd: number, buf: Uint8Array, pos: number, file: string): number {
  let got = 0
  try {
    while (got < buf.length) {
      const n = fsSync.readSync(fd, buf, got, buf.length - got, pos + got)
      got += n
      if (n === 0 || got < buf.length) break
    }
  } catch (e) {
    throw onFile(e, file)
  }
  return got
}

/**
 * Bits of entropy per byte of a sample (order 0). Random or already
 * compressed data is close to 8; deflate cannot win there, and the
 * estimate costs microseconds where a trial deflate costs tens.
 */
function sampleEntropy(chunk: Uint8Array): number {
  const n = Math.min(chunk.length, SAMPLE)
  const counts = new Uint32Array(256)
  for (let i = 0; i < n; i++) counts[chunk[i]!]!++
  let h = 0
  for (const c of counts) if (c > 0) h -= (c / n) * Math.log2(c / n)
  return h
}

function maybeCompress(chunk: Uint8Array): { bytes: Uint8Array; codec: 0 | 1 } {
  if (sampleEntropy(chunk) > 7.2) return { bytes: chunk, codec: 0 }
  const packed = zlib.deflateRawSync(chunk, { level: 1 })
  return packed.length < chunk.length * COMPRESS_BELOW ? { bytes: packed, codec: 1 } : { bytes: chunk, codec: 0 }
}

/** Batch buffers kept from one pack to the next (two per pack being written). */
const batchBuffers = new BufferPool(WRITE_BATCH, 4)

/**
 * Writes one pack: new chunks appended (in large writes, one in flight),
 * known ones referenced. Chunks are borrowed (chunkStream reuses its
 * window and its source its read buffers): each new one is copied into a
 * batch buffer before add() returns. Two batch buffers take turns, one
 * filling while the other is written, so a blob of any size allocates no
 * buffer per batch (fresh ones cost page faults and GC: ~10 % of an
 * import's CPU).
 */
export class PackWriter {
  private readonly entries: ChunkRef[] = []
  private readonly own = new Map<string, ChunkRef>()
  private offset = 0
  /** The batch being filled, and the buffer whose write is in flight (or done: free for the next batch). */
  private batch: Buffer = batchBuffers.take()
  private spare: Buffer | undefined
  private batchSize = 0
  private writing: Promise<unknown> = Promise.resolve()
  /** The background fdatasync while one runs, its failure, and the bytes written since the last one started. */
  private syncing: Promise<void> | undefined
  private syncFailed: unknown
  private unsynced = 0
  private released = false
  static readonly SELF = ''

  private constructor(private readonly fh: fs.FileHandle) {}

  static async create(file: string): Promise<PackWriter> {
    return new PackWriter(await fs.open(file, fsSync.constants.O_CREAT | fsSync.constants.O_EXCL | fsSync.constants.O_WRONLY, 0o444))
  }

  /** `digest`: the chunk's BLAKE3 where the caller has checked it already (a chunk list's). */
  async add(chunk: Uint8Array, index: ChunkLookup, digest: B3Digest = b3(chunk)): Promise<void> {
    const known = index.get(digest) ?? this.own.get(toHex(digest))
    if (known) {
      this.entries.push({ ...known, digest })
      return
    }
    const { bytes, codec } = maybeCompress(chunk)
    const ref: ChunkRef = { digest, size: chunk.length, pack: PackWriter.SELF, offset: this.offset, stored: bytes.length, codec }
    this.offset += bytes.length
    this.own.set(toHex(digest), ref)
    this.entries.push(ref)
    for (let at = 0; at < bytes.length; ) {
      const n = Math.min(bytes.length - at, WRITE_BATCH - this.batchSize)
      this.batch.set(bytes.subarray(at, at + n), this.batchSize)
      this.batchSize += n
      at += n
      if (this.batchSize === WRITE_BATCH) await this.flush()
    }
  }

  private async flush(): Promise<void> {
    if (this.batchSize === 0) return
    const buf = this.batch
    const full = buf.subarray(0, this.batchSize)
    await this.writing
    if (this.syncFailed) throw this.syncFailed
    this.batch = this.spare ?? batchBuffers.take()
    this.spare = undefined
    this.batchSize = 0
    this.writing = writeAll(this.fh, full).then(() => {
      this.spare = buf
      this.unsynced += full.length
      if (this.unsynced >= SYNC_EVERY) this.startSync()
    })
    // A failed write (ENOSPC) surfaces at the next flush, finish or abort; until
    // then nobody awaits it, and an unhandled rejection would end the process.
    this.writing.catch(() => {})
  }

  /**
   * Starts writeback of what is written so far, unless one is still running.
   * Only earlier durability: the commit still fsyncs the file. A failure
   * fails the pack (at the next flush or at finish): once fdatasync has
   * reported an error, a later fsync of the file may not report it again.
   */
  private startSync(): void {
    if (this.syncing) return
    this.unsynced = 0
    this.syncing = this.fh.datasync().then(
      () => {
        this.syncing = undefined
      },
      (e) => {
        this.syncing = undefined
        this.syncFailed ??= e
      },
    )
  }

  /**
   * Writes the manifest and closes; returns the entries with `self` as
   * their own pack's name. `sealed` only when `self` was computed from the
   * very bytes whose chunks were added (not taken from a caller or a
   * peer): its readers then trust the chunk list and skip the whole-blob
   * check (see the seal above).
   */
  async finish(self: string, sealed = false): Promise<ChunkRef[]> {
    await this.flush()
    await this.writing
    await this.syncing
    if (this.syncFailed) throw this.syncFailed
    const entries = this.entries.map((e) => (e.pack === PackWriter.SELF ? { ...e, pack: self } : e))
    const list = encodeManifest(entries, self)
    const manifest = sealed ? Buffer.concat([list, sealOf(list, self)]) : list
    const trailer = Buffer.alloc(4)
    trailer.writeUInt32LE(manifest.length)
    await writeAll(this.fh, Buffer.concat([manifest, trailer, MAGIC]))
    await this.fh.close()
    this.release()
    return entries
  }

  async abort(): Promise<void> {
    await this.writing.catch(() => {})
    await this.syncing
    await this.fh.close().catch(() => {})
    this.release()
  }

  /** Every write has settled: the batch buffers go back to the pool. */
  private release(): void {
    if (this.released) return
    this.released = true
    batchBuffers.give(this.batch)
    if (this.spare) batchBuffers.give(this.spare)
  }
}

/** Writes all of `buf` at the file's position (a write may be short: the rest follows). */
async function writeAll(fh: fs.FileHandle, buf: Uint8Array): Promise<void> {
  for (let at = 0; at < buf.length; ) at += (await fh.write(buf, at, buf.length - at)).bytesWritten
}
