import { type BlobService, iterateSource, readAll } from './blob-service.js'
import { type B3Digest, bytesEqual, toHex } from './digest.js'
import { type Directory, directoryDigest, entriesInOrder } from './directory.js'
import type { DirectoryService } from './directory-service.js'
import type { FileNode, Node } from './node.js'
import type { CallOptions } from '../util/call-options.js'
import { limiter } from '../util/pool.js'

/*
 * Reading a tree from a store that answers each call one round trip later
 * (a daemon): its Directories come in one recursive Get, and the blobs of
 * the next files are fetched, several at once, while the current one is
 * used. The reader it gives answers the same calls, in the same order of
 * files (NAR order), so what is built from it is unchanged byte for byte.
 */

/** The store calls a tree walk makes (renderNar's CastoreReader, with the recursive Get). */
export interface TreeSource {
  blobs: Pick<BlobService, 'open'> & Partial<WholeReads>
  directories: Pick<DirectoryService, 'get' | 'getClosure'>
}

/** Returned by readWhole for a blob with more than the bytes asked for. */
export const LARGER = Symbol('larger')

/**
 * Optional capability of a BlobService whose every call costs a round
 * trip: a small blob read whole in one step, checked against its digest,
 * without a stream's per-piece steps.
 */
export interface WholeReads {
  /** The blob's bytes if it has at most `maxBytes`, LARGER if more (then nothing more is read), undefined if absent. */
  readWhole(digest: B3Digest, maxBytes: number, opts?: CallOptions): Promise<Uint8Array | undefined | typeof LARGER>
}

/** Files up to this size are fetched ahead whole; a larger one streams when its turn comes (a single stream fills the link). */
const AHEAD_FILE_BYTES = 1 << 20
/** Bytes of fetched, not yet used files held at once: the memory bound of a walk. */
const AHEAD_BYTES = 8 << 20
/** Files queued ahead of the walk (fetched or not), bounding the bookkeeping for trees of empty files. */
const AHEAD_FILES = 512
/** Blob reads in flight at once: enough to hide the round trip, few beside a daemon's transfer slots (16 by default). */
const READS_IN_FLIGHT = 8

interface Ahead {
  digest: B3Digest
  /** The blob's bytes (undefined: absent), or nothing for a file left to stream. */
  data?: Promise<Uint8Array | undefined | typeof LARGER>
  size: number
}

export interface ReadAhead {
  /** Serves `get` from the recursive Get and `open` from the files fetched ahead, falling back to `source` for anything else. */
  reader: TreeSource
  /** Stops fetching and cancels what is in flight: call it once the walk ends, however it ends. */
  stop(): void
}

/**
 * A reader for the tree under `root` that fetches ahead of the walk that
 * uses it. A fetch that fails fails the walk where it reaches that file,
 * so what came before is out, and the error is the store's own; a file
 * walked in another order than NAR order (a skipped one) is read directly.
 */
export function readAhead(source: TreeSource, root: Node, signal?: AbortSignal): ReadAhead {
  const ac = new AbortController()
  const stopOn = signal ? AbortSignal.any([signal, ac.signal]) : ac.signal
  const opts = { signal: stopOn }
  const dirs = new DirectoryArrivals()
  const queue: Ahead[] = []
  let heldBytes = 0
  let roomFor: (() => void) | undefined
  const run = limiter(READS_IN_FLIGHT)

  const fetchWhole = async (digest: B3Digest): Promise<Uint8Array | undefined | typeof LARGER> => {
    if (source.blobs.readWhole) return source.blobs.readWhole(digest, AHEAD_FILE_BYTES, opts)
    const src = await source.blobs.open(digest, opts)
    return src && readAll(src)
  }
  const full = () => queue.length >= AHEAD_FILES || heldBytes >= AHEAD_BYTES
  const enqueue = async (f: FileNode) => {
    while (full() && !stopOn.aborted) await new Promise<void>((resolve) => (roomFor = resolve))
    if (stopOn.aborted) return
    const small = f.size <= AHEAD_FILE_BYTES
    const entry: Ahead = { digest: f.digest, size: small ? f.size : 0 }
    if (small) {
      entry.data = run(() => fetchWhole(f.digest))
      // Seen by the walk when it gets there; until then (or if it never does) not an unhandled rejection.
      entry.data.catch(() => {})
      heldBytes += f.size
    }
    queue.push(entry)
  }

  if (root.kind === 'directory') {
    void dirs.pump(source.directories.getClosure(root.digest, opts))
    void walkFiles(root.digest, dirs, enqueue, stopOn).catch(() => {})
  } else if (root.kind === 'file') {
    void enqueue(root)
  }

  const reader: TreeSource = {
    directories: {
      get: async (digest, o) => (await dirs.get(digest)) ?? source.directories.get(digest, o),
      getClosure: (digest, o) => source.directories.getClosure(digest, o),
    },
    blobs: {
      open: async (digest, o) => {
        const i = queue.findIndex((e) => bytesEqual(e.digest, digest))
        if (i < 0) return source.blobs.open(digest, o)
        // Files before it were skipped by the walk: their fetches are dropped.
        const passed = queue.splice(0, i + 1)
        for (const e of passed) heldBytes -= e.size
        roomFor?.()
        const entry = passed.at(-1)!
        const data = await entry.data
        // Left to stream, or larger than its node says: read as the walk would read it without us.
        if (entry.data === undefined || data === LARGER) return source.blobs.open(digest, o)
        return data && iterateSource(data)
      },
    },
  }
  return {
    reader,
    stop: () => {
      ac.abort()
      roomFor?.()
    },
  }
}

/**
 * The Directories of a recursive Get, by digest, as they arrive (all of
 * them kept until the walk ends, as a copy keeps a closure's). A
 * Directory the stream did not bring (it failed, or ended without it) is
 * undefined: the caller asks the store for it alone and gets the store's
 * own answer.
 */
class DirectoryArrivals {
  private readonly got = new Map<string, Directory>()
  private ended = false
  private waiters: Array<() => void> = []

  async pump(src: AsyncIterable<Directory>): Promise<void> {
    try {
      for await (const d of src) {
        this.got.set(toHex(directoryDigest(d)), d)
        this.wake()
      }
    } catch {
      // The walk falls back to single Gets, which fail with the store's error.
    } finally {
      this.ended = true
      this.wake()
    }
  }

  async get(digest: B3Digest): Promise<Directory | undefined> {
    const key = toHex(digest)
    for (;;) {
      const d = this.got.get(key)
      if (d || this.ended) return d
      await new Promise<void>((resolve) => this.waiters.push(resolve))
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w()
  }
}

/** The files under Directory `root` in NAR order, each handed to `each` (which may wait for room). */
async function walkFiles(root: B3Digest, dirs: DirectoryArrivals, each: (f: FileNode) => Promise<void>, signal: AbortSignal): Promise<void> {
  // An explicit stack of entry lists, innermost last: any depth works.
  const open: Array<{ entries: Node[]; next: number }> = []
  const enter = async (digest: B3Digest) => {
    const dir = await dirs.get(digest)
    // Not in the stream: the walk stops fetching ahead, and the reader's fallbacks take over.
    if (!dir) return false
    open.push({ entries: entriesInOrder(dir), next: 0 })
    return true
  }
  if (!(await enter(root))) return
  while (open.length > 0 && !signal.aborted) {
    const top = open.at(-1)!
    if (top.next === top.entries.length) {
      open.pop()
      continue
    }
    const node = top.entries[top.next++]!
    if (node.kind === 'file') await each(node)
    else if (node.kind === 'directory' && !(await enter(node.digest))) return
  }
}
