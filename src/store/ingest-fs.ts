import { createHash } from 'node:crypto'
import fs from 'node:fs'
import type { CallOptions } from '../util/call-options.js'
import { putReused } from '../castore/blob-service.js'
import { b3 } from '../castore/digest.js'
import type { Node } from '../castore/node.js'
import { DirectoryEncoder } from '../castore/proto.js'
import type { ReusableSource } from '../castore/reusable-source.js'
import { stageDirectory, type TreeObserver, type TreeStage } from '../castore/tree-stage.js'
import { InvalidInputError } from '../errors.js'
import { BufferPool } from '../util/buffer-pool.js'
import { NarEncoder } from './nar/encoder.js'
import { listDir, type TreeFingerprint } from './tree-fingerprint.js'

export interface IngestProgress {
  (bytes: number, files: number): void
}

export interface IngestResult {
  /** Anonymous (empty-named) root node; its blobs and Directories are in the stage. */
  root: Node
  narSize: number
  narSha256: Uint8Array
}

/** Files up to this size are read in one call; larger ones are streamed. */
const SMALL_FILE = 1 << 20
const READ_CHUNK = 1 << 20
/** Blob writes in flight while the walk goes on (more where the stage asks for more: BlobStage.putsAtOnce). */
const MAX_PENDING_WRITES = 32
/** Bytes of small files held by writes in flight: what a walk keeps in memory, however many writes the stage wants. */
const MAX_PENDING_BYTES = 32 << 20
const EMPTY = new Uint8Array(0)
const SLASH = Buffer.from('/')

/**
 * Imports a filesystem path into the castore, reading each file once:
 * the same bytes feed the blob writer (BLAKE3) and the NAR hash (SHA-256),
 * so the store path is known without rendering the NAR again. The walk
 * goes in NAR order (names sorted bytewise) and never follows symlinks.
 * Metadata and small files are read synchronously (this runs in a CLI,
 * and it avoids a thread-pool round trip per syscall); writes run in the
 * background, bounded.
 */
export interface IngestOptions extends CallOptions {
  /** Told of every file and Directory as it is staged. */
  observe?: TreeObserver
  /** Fed every entry's name and stats, as the walk meets them (a later import may find the tree unchanged: import-cache.ts). */
  fingerprint?: TreeFingerprint
}

export async function ingestPath(fsPath: string, tree: TreeStage, onProgress?: IngestProgress, opts: IngestOptions = {}): Promise<IngestResult> {
  const sha = createHash('sha256')
  // Each piece is hashed before the sink returns: the encoder fills the same buffer again.
  const nar = new NarEncoder((c) => sha.update(c), { reuse: 'sink' })
  const { blobs: stage, directories } = tree
  const { observe, fingerprint, ...callOpts } = opts
  const pending = new Set<Promise<unknown>>()
  const maxPending = stage.putsAtOnce ?? MAX_PENDING_WRITES
  let pendingBytes = 0
  let failure: unknown

  const track = (p: Promise<unknown>, bytes: number) => {
    pendingBytes += bytes
    const done = () => {
      pending.delete(q)
      pendingBytes -= bytes
    }
    const q: Promise<unknown> = p.then(done, (e) => {
      done()
      failure ??= e
    })
    pending.add(q)
  }
  // Where puts travel on a connection, the event loop turns every stage.turnBytes of small files read (the
  // reads are synchronous): their batches are sent only then.
  const turnBytes = stage.turnBytes ?? Infinity
  let sinceTurn = 0
  const full = () => pending.size >= maxPending || pendingBytes >= MAX_PENDING_BYTES
  const throttle = async () => {
    while (full()) await Promise.race(pending)
    if (failure) throw failure
  }

  /** A regular file; `fd`, if given, is open on it (closed here). */
  async function file(p: Buffer, st: fs.Stats, fd?: number): Promise<Node> {
    const executable = (st.mode & 0o100) !== 0
    fingerprint?.leaf(st)
    if (st.size <= SMALL_FILE) {
      // Read into the walk's one buffer: what the stage does not take at once is copied out for its put.
      const data = st.size === 0 ? EMPTY : readSmall(p, fd, st.size)
      if (fd !== undefined && st.size === 0) fs.closeSync(fd)
      nar.regular(executable, data.length)
      nar.contents(data)
      nar.endContents(data.length)
      // BLAKE3 of <= 1 MiB is microseconds; knowing the digest now keeps the walk going, and the stage need not hash it again.
      const digest = b3(data)
      if (!stage.putNow?.(data, digest)) {
        if (full() || failure) await throttle()
        track(putReused(stage, data, { ...callOpts, digest }), data.length)
      }
      observe?.file(digest, data.length)
      onProgress?.(data.length, 1)
      if ((sinceTurn += data.length) >= turnBytes) {
        sinceTurn = 0
        await new Promise<void>((resolve) => setImmediate(resolve))
      }
      return { kind: 'file', name: EMPTY, digest, size: data.length, executable }
    }
    if (fd !== undefined) fs.closeSync(fd)
    nar.regular(executable, st.size)
    const info = await stage.put(fileSource(p, st.size, (c) => {
      nar.contents(c)
      onProgress?.(c.length, 0)
    }), callOpts)
    observe?.file(info.digest, info.size)
    onProgress?.(0, 1)
    nar.endContents(st.size)
    return { kind: 'file', name: EMPTY, digest: info.digest, size: info.size, executable }
  }

  /** A node that is not a Directory: a symlink or a file. */
  async function leaf(p: Buffer, st: fs.Stats): Promise<Node> {
    if (st.isSymbolicLink()) {
      const target = fs.readlinkSync(p, { encoding: 'buffer' })
      fingerprint?.leaf(st)
      nar.symlink(target)
      return { kind: 'symlink', name: EMPTY, target }
    }
    if (st.isFile()) return file(p, st)
    throw new InvalidInputError(`file '${p.toString()}' has an unsupported type`)
  }

  /**
   * A file the directory listing says is regular: opened without following
   * a symlink and fstat'ed, one syscall fewer than lstat then open. Undefined
   * if it is something else by now (the caller lstats it, as any entry).
   */
  async function listedFile(p: Buffer): Promise<Node | undefined> {
    let fd: number
    try {
      // O_NONBLOCK: a FIFO swapped in since the listing must not block the open.
      fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ELOOP') return undefined
      throw e
    }
    let st: fs.Stats
    try {
      st = fs.fstatSync(fd)
    } catch (e) {
      fs.closeSync(fd)
      throw e
    }
    if (!st.isFile()) {
      fs.closeSync(fd)
      return undefined
    }
    return file(p, st, fd)
  }

  /** Depth-first in NAR order, with an explicit stack of open directories: any depth works. */
  async function walk(rootPath: Buffer): Promise<Node> {
    // Each open folder's finished entries already encoded (listed in name order): no node of them is held.
    const open: Array<{ path: Buffer; entries: fs.Dirent[]; next: number; name?: Buffer; dir: DirectoryEncoder }> = []
    let p: Buffer | undefined = rootPath
    /** What the listing says `p` is (its type), so a file or folder needs no lstat. */
    let listed: fs.Dirent | undefined
    let done: Node | undefined
    for (;;) {
      if (p) {
        opts.signal?.throwIfAborted()
        if (listed?.isFile()) done = await listedFile(p)
        if (!done) {
          const st = listed?.isDirectory() ? undefined : fs.lstatSync(p)
          if (!st || st.isDirectory()) {
            nar.directory()
            fingerprint?.directory()
            open.push({ path: p, entries: listDir(p), next: 0, dir: new DirectoryEncoder() })
          } else {
            done = await leaf(p, st)
          }
        }
        p = undefined
      }
      const top = open.at(-1)
      if (!top) return done!
      if (done) {
        nar.endEntry()
        top.dir.add({ ...done, name: top.name! })
        done = undefined
      }
      if (top.next < top.entries.length) {
        listed = top.entries[top.next++]!
        const name = (top.name = Buffer.from(listed.name, 'latin1'))
        nar.entry(name)
        fingerprint?.name(name)
        p = Buffer.concat([top.path, SLASH, name])
      } else {
        nar.endDirectory()
        fingerprint?.endDirectory()
        open.pop()
        // Staged now (its bytes spilled or kept encoded): the ingest holds no Directory it has finished.
        done = await stageDirectory(directories, top.dir, observe)
      }
    }
  }

  try {
    nar.begin()
    const root = await walk(Buffer.from(fsPath))
    await Promise.all(pending)
    if (failure) throw failure
    nar.flush()
    return { root, narSize: nar.size, narSha256: sha.digest() }
  } catch (e) {
    await Promise.allSettled(pending)
    throw e
  }
}

/** The buffer small files are read into, one after another: valid until the next read. */
let smallReads: Buffer | undefined

/**
 * The first `size` bytes of a small file (fewer if it shrank, as
 * readFileSync would), read through `fd` if it is open (closed here),
 * into the shared buffer: a fresh one per file made ~60 MiB of garbage
 * for 15,000 files, and fresh memory is dear.
 */
function readSmall(p: Buffer, fd: number | undefined, size: number): Buffer {
  const buf = (smallReads ??= Buffer.allocUnsafeSlow(SMALL_FILE))
  const open = fd ?? fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW)
  try {
    let got = 0
    for (let n = 1; got < size && n > 0; got += n) n = fs.readSync(open, buf, got, size - got, null)
    return buf.subarray(0, got)
  } finally {
    fs.closeSync(open)
  }
}

/** Read buffers of large files, kept from one file to the next. */
const readBuffers = new BufferPool(READ_CHUNK, 2)

/** Exactly `size` bytes of a file, failing if it changed meanwhile; in reused buffers for a consumer that takes them. */
function fileSource(p: Buffer, size: number, tap: (c: Uint8Array) => void): ReusableSource {
  return {
    size,
    [Symbol.asyncIterator]: () => streamFile(p, size, tap, false),
    reusing: () => streamFile(p, size, tap, true),
  }
}

/**
 * Streams exactly `size` bytes of a file, failing if it changed meanwhile.
 * The next read is issued before a chunk is handed on, so reading overlaps
 * with hashing and writing it. `reuse`: two pooled buffers take turns (the
 * one handed on is free again once the next is asked for), else each read
 * gets a fresh one.
 */
async function* streamFile(p: Buffer, size: number, tap: (c: Uint8Array) => void, reuse: boolean): AsyncGenerator<Uint8Array> {
  const fh = await fs.promises.open(p, 'r')
  const turns = reuse ? [readBuffers.take(), readBuffers.take()] : undefined
  let reads = 0
  const read = async () => {
    const buf = turns ? turns[reads++ % 2]! : Buffer.allocUnsafe(READ_CHUNK)
    const { bytesRead } = await fh.read(buf, 0, READ_CHUNK, null)
    return buf.subarray(0, bytesRead)
  }
  let next: Promise<Buffer> | undefined
  try {
    let left = size
    next = read()
    for (;;) {
      const chunk = await next
      next = undefined
      if (chunk.length === 0) break
      if (chunk.length > left) throw changed(p)
      left -= chunk.length
      next = read()
      tap(chunk)
      yield chunk
    }
    if (left !== 0) throw changed(p)
  } finally {
    await next?.catch(() => {})
    await fh.close()
    // The consumer has asked for more or stopped: it holds no view of them now.
    for (const b of turns ?? []) readBuffers.give(b)
  }
}

function changed(p: Buffer): InvalidInputError {
  return new InvalidInputError(`file '${p.toString()}' changed while it was being imported`)
}
