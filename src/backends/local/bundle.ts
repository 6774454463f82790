/**
 * Small blobs of one stage commit (an import, a NAR ingest) stored
 * together in one bundle file instead of a file each: creating a temp file
 * and renaming it cost more than all else an import of many small files
 * does. `blobs/bundles/<hex>.bundle`, named by the BLAKE3 of its index:
 *
 *   bundle  = member* index trailer
 *   member  = the blob's bytes (each at most 1 MiB, back to back)
 *   index   = fanout[256] entry*                 sorted by digest
 *   fanout  = u32le: entries whose first byte is <= i (git's fanout)
 *   entry   = digest[32] u64le(offset) u32le(size)
 *   trailer = u32le(count) u64le(index offset) b3(index)[32] "TVXBNDL1"
 *
 * The index is checked against its BLAKE3 when it is loaded, and every
 * member against its own digest before any byte of it is used.
 */
import fsSync from 'node:fs'
import { type B3Digest, b3, b3Matches, bytesEqual, toHex } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import type { DigestTable } from './digest-table.js'
import { onFile, readIfPresent } from './io-errors.js'
import { FANOUT, compareAt, digestOrder } from './sorted-digests.js'
import type { LocalRoot } from './layout.js'
import { readFull } from './pack.js'

const MAGIC = Buffer.from('TVXBNDL1')
const TRAILER = 4 + 8 + 32 + MAGIC.length
/** An index entry: digest, u64le offset, u32le size. */
export const ENTRY = 32 + 8 + 4
/** Member bytes gathered before one write: a write per small file would be most of the syscalls again. */
const WRITE_BATCH = 1 << 20

export interface Member {
  offset: number
  size: number
}

/**
 * Appends members to a new bundle file (a temp file), then writes its
 * index. Synchronous: each member is a small buffer already in memory, and
 * a put must not give other puts a turn halfway through an append.
 */
export class BundleWriter {
  /** The index entries so far, in the order added, as the index stores them (ENTRY bytes each, not an object and a Buffer each). */
  private entries = Buffer.alloc(ENTRY * 1024)
  private members = 0
  private offset = 0
  private batch = Buffer.allocUnsafe(WRITE_BATCH)
  private batched = 0
  private written = 0
  private closed = false

  constructor(
    private readonly fd: number,
    readonly file: string,
  ) {}

  static create(file: string): BundleWriter {
    return new BundleWriter(fsSync.openSync(file, fsSync.constants.O_CREAT | fsSync.constants.O_EXCL | fsSync.constants.O_WRONLY, 0o444), file)
  }

  get count(): number {
    return this.members
  }

  /** Member bytes so far. */
  get size(): number {
    return this.offset
  }

  /** Appends one member; once per digest, which the caller sees to (a stage knows what it wrote, a bundle rewritten has each once). */
  add(digest: B3Digest, data: Uint8Array): void {
    if (this.batched + data.length > WRITE_BATCH) this.flush()
    if (data.length > WRITE_BATCH) this.write(data)
    else {
      this.batch.set(data, this.batched)
      this.batched += data.length
    }
    if ((this.members + 1) * ENTRY > this.entries.length) {
      const grown = Buffer.alloc(this.entries.length * 2)
      this.entries.copy(grown)
      this.entries = grown
    }
    const at = this.members++ * ENTRY
    this.entries.set(digest, at)
    this.entries.writeBigUInt64LE(BigInt(this.offset), at + 32)
    this.entries.writeUInt32LE(data.length, at + 40)
    this.offset += data.length
  }

  private flush(): void {
    if (this.batched === 0) return
    this.write(this.batch.subarray(0, this.batched))
    this.batched = 0
  }

  private write(data: Uint8Array): void {
    try {
      for (let done = 0; done < data.length; ) done += fsSync.writeSync(this.fd, data, done, data.length - done, this.written + done)
    } catch (e) {
      throw onFile(e, this.file)
    }
    this.written += data.length
  }

  /** Writes the index and trailer and closes the file (not synced: the stage's commit syncs it); the bundle's name (hex). */
  finish(): string {
    const { entries, members } = this
    const { order, ends } = digestOrder(entries, members, ENTRY)
    const index = Buffer.alloc(FANOUT + members * ENTRY)
    order.forEach((e, i) => entries.copy(index, FANOUT + i * ENTRY, e * ENTRY, (e + 1) * ENTRY))
    for (let i = 0; i < 256; i++) index.writeUInt32LE(ends[i]!, i * 4)
    const digest = b3(index)
    const trailer = Buffer.alloc(TRAILER)
    trailer.writeUInt32LE(members, 0)
    trailer.writeBigUInt64LE(BigInt(this.offset), 4)
    trailer.set(digest, 12)
    MAGIC.copy(trailer, 44)
    this.flush()
    this.write(index)
    this.write(trailer)
    this.close()
    return toHex(digest)
  }

  /** Closes the file, once (finish closes it; a failed commit's cleanup must not close a descriptor number reused since). */
  close(): void {
    if (this.closed) return
    this.closed = true
    fsSync.closeSync(this.fd)
  }
}

/** A bundle's index, checked and kept as its raw bytes (44 bytes a member: a store of a million small files costs ~44 MB, not ~200 as objects). */
export class BundleIndex {
  constructor(
    readonly name: string,
    readonly file: string,
    private readonly index: Buffer,
    readonly count: number,
  ) {}

  /** Records in `table` that list `list` (this bundle) holds each of its members. */
  addTo(table: DigestTable, list: number): void {
    table.addAll(this.index, FANOUT, ENTRY, this.count, list)
  }

  /** Its index entries (digest, offset, size: ENTRY bytes each) in digest order, as views of the index. */
  *entries(): Generator<Buffer> {
    for (let i = 0; i < this.count; i++) yield this.index.subarray(FANOUT + i * ENTRY, FANOUT + (i + 1) * ENTRY)
  }

  /** Where member `digest` is, or undefined: the fanout narrows the search to the entries of its first byte. */
  find(digest: Uint8Array): Member | undefined {
    const first = digest[0]!
    let lo = first === 0 ? 0 : this.index.readUInt32LE((first - 1) * 4)
    let hi = this.index.readUInt32LE(first * 4)
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const c = compareAt(this.index, FANOUT + mid * ENTRY, digest)
      if (c === 0) return this.member(mid)
      if (c < 0) lo = mid + 1
      else hi = mid
    }
    return undefined
  }

  private member(i: number): Member {
    return memberAt(this.index, FANOUT + i * ENTRY)
  }

  /** Every member, in digest order. */
  *members(): Generator<Member & { hex: string }> {
    for (let i = 0; i < this.count; i++) {
      const at = FANOUT + i * ENTRY
      yield { hex: this.index.toString('hex', at, at + 32), ...this.member(i) }
    }
  }
}

/** The member an index entry at `at` of `buf` describes (its offset and size after the digest). */
export function memberAt(buf: Buffer, at: number): Member {
  // u64le, below 2^53 (a file offset): two halves, no BigInt per lookup (one per file an export reads).
  return { offset: buf.readUInt32LE(at + 36) * 0x1_0000_0000 + buf.readUInt32LE(at + 32), size: buf.readUInt32LE(at + 40) }
}

/** The checked index of the bundle at `file`; undefined if there is no such file, an IntegrityError if it is damaged. */
export function readBundleIndex(file: string, name: string): BundleIndex | undefined {
  return readIfPresent(file, (fd) => {
    const bad = (why: string) => new IntegrityError(`bundle ${file} is corrupt: ${why}`)
    const size = fsSync.fstatSync(fd).size
    const trailer = Buffer.alloc(TRAILER)
    if (size < TRAILER + FANOUT || readFull(fd, trailer, size - TRAILER, file) !== TRAILER || !trailer.subarray(44).equals(MAGIC)) throw bad('it is truncated or not a bundle')
    const count = trailer.readUInt32LE(0)
    const at = Number(trailer.readBigUInt64LE(4))
    if (at + FANOUT + count * ENTRY + TRAILER !== size) throw bad('its index does not fit')
    const index = Buffer.allocUnsafe(FANOUT + count * ENTRY)
    if (readFull(fd, index, at, file) !== index.length || !bytesEqual(b3(index), trailer.subarray(12, 44))) throw bad('its index does not match its digest')
    if (index.readUInt32LE(255 * 4) !== count) throw bad('its fanout does not add up')
    return new BundleIndex(name, file, index, count)
  })
}

/**
 * Bytes of a bundle read at once when its members are read in the order
 * they are stored (a tree exported as it was imported: bundles are written
 * in the walk's order, which is NAR order): one read per 256 KiB instead
 * of one per file.
 */
const READ_WINDOW = 256 << 10

/**
 * Reads members of bundles, keeping the files open (at most `maxOpen`:
 * then all are closed and reopened as needed). Members read in stored
 * order are served from a window of the file read ahead; any other read
 * reads just the member. The window is one buffer, reused: what read()
 * returns is always a copy (or the caller's `into`).
 */
export class MemberReader {
  private readonly fds = new Map<string, number>()
  /** The bytes of `file` from `start` in `buf[0, length)`, read ahead; and where the last member read ended in `lastFile`. */
  private window?: { file: string; start: number; length: number; buf: Buffer }
  private lastFile?: string
  private lastEnd = 0

  constructor(private readonly maxOpen = 32) {}

  /** `size` bytes at `offset` into `into` (a fresh buffer if none); fewer means the file is truncated. */
  read(file: string, m: Member, into: Uint8Array = Buffer.allocUnsafe(m.size)): Uint8Array {
    const out = into.subarray(0, m.size)
    const w = this.window
    if (w?.file === file && m.offset >= w.start && m.offset + m.size <= w.start + w.length) {
      out.set(w.buf.subarray(m.offset - w.start, m.offset - w.start + m.size))
    } else if (this.lastFile === file && m.offset >= this.lastEnd && m.offset - this.lastEnd < READ_WINDOW && m.size <= READ_WINDOW / 2) {
      // Just after the last member read (a skipped duplicate or empty file apart): the next ones likely follow.
      const buf = w?.buf ?? Buffer.allocUnsafe(READ_WINDOW)
      const got = readFull(this.open(file), buf, m.offset, file)
      this.window = { file, start: m.offset, length: got, buf }
      if (got < m.size) throw new IntegrityError(`bundle ${file} is truncated`)
      out.set(buf.subarray(0, m.size))
    } else if (readFull(this.open(file), out, m.offset, file) !== m.size) {
      throw new IntegrityError(`bundle ${file} is truncated`)
    }
    this.lastFile = file
    this.lastEnd = m.offset + m.size
    return out
  }

  private open(file: string): number {
    let fd = this.fds.get(file)
    if (fd === undefined) {
      if (this.fds.size >= this.maxOpen) this.close()
      fd = fsSync.openSync(file, 'r')
      this.fds.set(file, fd)
    }
    return fd
  }

  /** Closes the files and forgets what was read ahead (a sweep may have compacted the bundles). */
  close(): void {
    for (const fd of this.fds.values()) fsSync.closeSync(fd)
    this.fds.clear()
    this.window = undefined
    this.lastFile = undefined
  }
}

/**
 * Copies the members of bundle `from` that `keep` names into a new bundle,
 * each checked against its digest on the way, and publishes it durably
 * (synced, renamed, its folder synced); the caller then removes the old
 * one. A member that fails its check is left out with `drop` (repair:
 * `dropped` lists it), or stops the copy with `abort` (gc: the old bundle
 * stays as it is, undefined returned). Runs with writers held off.
 */
export async function rewriteBundle(
  root: LocalRoot,
  from: BundleIndex,
  keep: (hex: string) => boolean,
  onCorrupt: 'abort' | 'drop',
): Promise<{ size: number; dropped: string[] } | undefined> {
  const tmp = root.tempPath()
  const out = BundleWriter.create(tmp)
  const reader = new MemberReader(1)
  const dropped: string[] = []
  try {
    for (const m of from.members()) {
      if (!keep(m.hex)) continue
      const digest = Buffer.from(m.hex, 'hex')
      let data: Uint8Array | undefined
      try {
        data = reader.read(from.file, m)
      } catch (e) {
        if (!(e instanceof IntegrityError)) throw e
      }
      if (!data || !b3Matches(data, digest)) {
        if (onCorrupt === 'abort') {
          out.close()
          await root.discard(tmp)
          return undefined
        }
        dropped.push(m.hex)
        continue
      }
      out.add(digest, data)
    }
    const name = out.finish()
    await root.syncFiles([tmp])
    const final = root.bundlePath(name)
    await root.publish(tmp, final)
    await root.sync()
    return { size: fsSync.statSync(final).size, dropped }
  } catch (e) {
    out.close()
    await root.discard(tmp)
    throw e
  } finally {
    reader.close()
  }
}
