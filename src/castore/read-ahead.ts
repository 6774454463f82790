import { type BlobService, type ImmediateReads, iterateSource, readAll } from './blob-service.js'
import { type B3Digest, bytesEqual, EMPTY_DIGEST, toHex } from './digest.js'
import { type Directory, directoryDigest, entriesInOrder, validateDirectory } from './directory.js'
import { decodeDirectory } from './proto.js'
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
  blobs: Pick<BlobService, 'open'> & Partial<WholeReads> & Partial<Pick<ImmediateReads, 'openNow'>>
  directories: Pick<DirectoryService, 'get' | 'getClosure'> & {
    /** getClosure with each Directory left encoded (a daemon's): decoded as the walk reaches it. */
    getClosureEncoded?(root: B3Digest, opts?: CallOptions): AsyncIterable<EncodedDirectory>
  }
}

/** Returned by readWhole for a blob with more than the bytes asked for. */
export const LARGER = Symbol('larger')

/** What readWhole gives: the blob's bytes, LARGER, or undefined (absent). */
export type WholeRead = Uint8Array | undefined | typeof LARGER

/**
 * Optional capability of a BlobService whose every call costs a round
 * trip: a small blob read whole in one step, checked against its digest,
 * without a stream's per-piece steps.
 */
export interface WholeReads {
  /** The blob's bytes if it has at most `maxBytes`, LARGER if more (then nothing more is read), undefined if absent. */
  readWhole(digest: B3Digest, maxBytes: number, opts?: CallOptions): Promise<WholeRead>
  /** How many readWhole calls are worth keeping in flight (READS_IN_FLIGHT when unset): many where they go in batches. */
  readonly readsAtOnce?: number
  /**
   * Many small blobs in one call, each handed to `each` as readWhole would
   * give it (checked), in the order asked; rejects at the first that fails
   * its check, those before it handed out. Only while `readManyLimits` says
   * how many a call takes.
   */
  readMany?(items: ReadonlyArray<{ digest: B3Digest; maxBytes: number }>, each: (i: number, r: WholeRead) => void, opts?: CallOptions): Promise<void>
  /** Blobs and bytes (counted as maxBytes) per readMany call, and calls worth keeping in flight; undefined: no readMany (now). */
  readonly readManyLimits?: { blobs: number; bytes: number; calls: number }
}

/** Files up to this size are fetched ahead whole; a larger one streams when its turn comes (a single stream fills the link). */
const AHEAD_FILE_BYTES = 1 << 20
/** Bytes of fetched, not yet used files held at once: the memory bound of a walk. */
const AHEAD_BYTES = 8 << 20
/**
 * Files queued ahead of the walk (fetched or not), bounding the bookkeeping
 * for trees of empty files. Reads in batches need it well past the blobs of
 * the batches in flight (3 × 256): at 512 the next batches went out as the
 * render freed room, a few files each, and an export of 5,000 small files
 * through a daemon waited on them (2048: 1.14 → 0.81 s; 4096 no better).
 */
const AHEAD_FILES = 2048
/** Blob reads in flight at once: enough to hide the round trip, few beside a daemon's transfer slots (16 by default). */
const READS_IN_FLIGHT = 8

/**
 * The fetch of one small blob's bytes, shared by the queued files that
 * have them. Set, not resolved: a batch settles its blobs by writing
 * here as their messages arrive, and one promise per call (`done`) is
 * all a file that is not here yet waits on; no promise per file.
 */
interface Fetch {
  digest: B3Digest
  maxBytes: number
  settled: boolean
  /** Once settled: the bytes (checked), LARGER, or undefined (absent), unless it failed. */
  result?: WholeRead
  failure?: unknown
  /** Settles once this fetch has (never rejects); unset while the fetch waits to be sent. */
  done?: Promise<void>
}

interface Ahead {
  digest: B3Digest
  /** Its bytes' fetch, or none for a file left to stream. */
  fetch?: Fetch
  /** Bytes this entry counts against AHEAD_BYTES (0 for a file that shares an earlier entry's fetch). */
  size: number
  /** Key in `fetching` while this entry is the last queued file with these contents. */
  key?: number
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
  const queue = new AheadQueue()
  const blobs = source.blobs
  let heldBytes = 0
  let roomFor: (() => void) | undefined
  // Reads that go in batches are bounded by the batching (and by AHEAD_BYTES here): no slot per read.
  const atOnce = blobs.readsAtOnce ?? READS_IN_FLIGHT
  const run: <T>(fn: () => Promise<T>) => Promise<T> = atOnce > AHEAD_FILES ? (fn) => fn() : limiter(atOnce)

  const settle = (f: Fetch, r: WholeRead) => {
    f.settled = true
    f.result = r
  }
  const fail = (f: Fetch, e: unknown) => {
    f.settled = true
    f.failure = e
  }
  /** One blob read on its own, where the store reads no batches. `maxBytes` is what the file's node says: a blob with more is LARGER. */
  const fetchOne = (f: Fetch) => {
    const read = blobs.readWhole ? () => blobs.readWhole!(f.digest, f.maxBytes, opts) : async () => {
      const src = await blobs.open(f.digest, opts)
      return src && readAll(src)
    }
    f.done = run(read).then((r) => settle(f, r), (e) => fail(f, e))
  }

  /**
   * Fetches not yet asked for, oldest first, sent in batches (readMany)
   * where the store reads them: what the walk queued in a turn goes out
   * at its end, up to the store's limits per call and calls at once.
   */
  const unsent: Fetch[] = []
  let unsentHead = 0
  let calls = 0
  /** The last batch call made: one still in flight whenever all calls are. */
  let lastSent: Promise<void> | undefined
  let sendDue = false
  const wantSend = () => {
    if (sendDue) return
    sendDue = true
    setImmediate(send)
  }
  const send = () => {
    sendDue = false
    for (;;) {
      if (stopOn.aborted || unsentHead === unsent.length) break
      const limits = blobs.readMany && blobs.readManyLimits
      if (!limits) {
        // No batches (any more): each blob on its own.
        while (unsentHead < unsent.length) fetchOne(unsent[unsentHead++]!)
        break
      }
      if (calls >= limits.calls) return
      let bytes = 0
      let end = unsentHead
      while (end < unsent.length && end - unsentHead < limits.blobs && (end === unsentHead || bytes + unsent[end]!.maxBytes <= limits.bytes)) bytes += unsent[end++]!.maxBytes
      const batch = unsent.slice(unsentHead, end)
      unsentHead = end
      calls++
      const done = blobs.readMany!(batch, (i, r) => settle(batch[i]!, r), opts).then(
        () => {},
        (e) => {
          for (const f of batch) if (!f.settled) fail(f, e)
        },
      ).finally(() => {
        calls--
        send()
      })
      for (const f of batch) f.done = done
      lastSent = done
    }
    unsent.length = unsentHead = 0
  }

  /**
   * Fetches of small blobs by digest (keyed by digestKey, the digest
   * itself compared), while their entry is queued: a file whose
   * contents an earlier queued file has (a tree's copies) shares its
   * fetch, one Read for both, and holds no more bytes.
   */
  const fetching = new Map<number, Ahead>()
  const full = () => queue.length >= AHEAD_FILES || heldBytes >= AHEAD_BYTES
  /** Queues `f` now if there is room (no promise per file), else once there is. */
  const enqueue = (f: FileNode): Promise<void> | void => (full() && !stopOn.aborted ? enqueueLater(f) : queueFile(f))
  const enqueueLater = async (f: FileNode) => {
    while (full() && !stopOn.aborted) await new Promise<void>((resolve) => (roomFor = resolve))
    queueFile(f)
  }
  const queueFile = (f: FileNode) => {
    // No bytes, and the digest of no bytes: renderNar writes such a file without asking for it (a tree's
    // empty files are one in ten), so it is not queued; were it asked for, it would be read as without us.
    if (stopOn.aborted || (f.size === 0 && bytesEqual(f.digest, EMPTY_DIGEST))) return
    const entry: Ahead = { digest: f.digest, size: 0 }
    if (f.size <= AHEAD_FILE_BYTES) {
      const key = digestKey(f.digest)
      const same = fetching.get(key)
      if (same && bytesEqual(same.digest, f.digest)) {
        // The bytes are held until the last file sharing them is used: that one counts them.
        entry.fetch = same.fetch
        entry.size = same.size
        same.size = 0
        same.key = undefined
      } else {
        entry.fetch = { digest: f.digest, maxBytes: f.size, settled: false }
        entry.size = f.size
        heldBytes += f.size
        unsent.push(entry.fetch)
        wantSend()
      }
      entry.key = key
      fetching.set(key, entry)
    }
    queue.push(entry)
  }

  /** The first `n` queued entries taken off the queue, the last of them returned (files before the one asked for were skipped by the walk: their fetches are dropped). */
  const take = (n: number): Ahead => {
    let e!: Ahead
    for (let k = 0; k < n; k++) {
      e = queue.shift()
      heldBytes -= e.size
      if (e.key !== undefined && fetching.get(e.key) === e) fetching.delete(e.key)
    }
    roomFor?.()
    return e
  }

  let walking = root.kind === 'directory'
  if (root.kind === 'directory') {
    const { getClosureEncoded } = source.directories
    void (getClosureEncoded ? dirs.pumpEncoded(getClosureEncoded.call(source.directories, root.digest, opts)) : dirs.pump(source.directories.getClosure(root.digest, opts)))
    void walkFiles(root.digest, dirs, enqueue, stopOn)
      .catch(() => {})
      .finally(() => (walking = false))
  } else if (root.kind === 'file') {
    void enqueue(root)
  }
  // The render asks in the walk's order: the file it wants is almost always the first queued.
  const queued = (digest: B3Digest) => (queue.first && bytesEqual(queue.first.digest, digest) ? 0 : queue.indexOf(digest))

  const reader: TreeSource = {
    directories: {
      get: async (digest, o) => (await dirs.get(digest)) ?? source.directories.get(digest, o),
      getClosure: (digest, o) => source.directories.getClosure(digest, o),
    },
    blobs: {
      // The file the render asks for next, when its bytes are here already: no promise, no stream.
      openNow: (digest) => {
        const result = queue.first?.fetch?.result
        if (!(result instanceof Uint8Array) || !bytesEqual(queue.first!.digest, digest)) return undefined
        take(1)
        return result
      },
      open: async (digest, o) => {
        let i = queued(digest)
        // The render can reach its first file before the walk, started with it, has queued it: one turn lets the walk catch up.
        if (i < 0 && walking && !full()) {
          await new Promise((resolve) => setImmediate(resolve))
          i = queued(digest)
        }
        if (i < 0) return source.blobs.open(digest, o)
        const { fetch } = take(i + 1)
        // Left to stream: read as the walk would read it without us.
        if (!fetch) return source.blobs.open(digest, o)
        while (!fetch.settled) {
          stopOn.throwIfAborted()
          // Not yet sent (the render overtook the batching): it goes now, or after a batch in flight.
          if (!fetch.done) send()
          await (fetch.done ?? lastSent)
        }
        if (fetch.failure !== undefined) throw fetch.failure
        // Larger than its node says: read as the walk would read it without us.
        if (fetch.result === LARGER) return source.blobs.open(digest, o)
        return fetch.result && iterateSource(fetch.result)
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
 * A number from a digest's first 30 bits: a key for a Map without a string
 * per digest, and small enough to be held unboxed (wider keys are heap
 * numbers, one allocation per file); the digest itself is compared on a hit.
 */
function digestKey(d: B3Digest): number {
  return d[0]! | (d[1]! << 8) | (d[2]! << 16) | ((d[3]! & 0x3f) << 24)
}

/**
 * The files queued ahead, oldest first, taken from the front by moving an
 * index: a splice per file moved the whole queue each time, 4 % of an
 * export's CPU through a daemon with 2,048 files queued.
 */
class AheadQueue {
  private items: Array<Ahead | undefined> = []
  private head = 0

  get length(): number {
    return this.items.length - this.head
  }

  get first(): Ahead | undefined {
    return this.items[this.head]
  }

  push(e: Ahead): void {
    this.items.push(e)
  }

  /** Where the first entry for `digest` is, counted from the front; -1 if none is. */
  indexOf(digest: B3Digest): number {
    for (let i = this.head; i < this.items.length; i++) if (bytesEqual(this.items[i]!.digest, digest)) return i - this.head
    return -1
  }

  /** The first entry, taken off (the queue must not be empty). */
  shift(): Ahead {
    const e = this.items[this.head]!
    this.items[this.head++] = undefined
    // Taken entries are dropped from the array once they are half of it: each entry is moved at most once.
    if (this.head >= AHEAD_FILES && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return e
  }
}

/** A Directory as its canonical bytes, with its digest (a recursive Get left encoded). */
export interface EncodedDirectory {
  digest: B3Digest
  bytes: Uint8Array
}

/**
 * The Directories of a recursive Get, by digest, as they arrive (all of
 * them kept until the walk ends, as a copy keeps a closure's). A
 * Directory the stream did not bring (it failed, or ended without it) is
 * undefined: the caller asks the store for it alone and gets the store's
 * own answer.
 *
 * From a store that sends them encoded, each is kept as its bytes and
 * decoded (and validated) when the walk enters it; the render, which
 * follows, takes that decoding. So only the Directories between the walk
 * and the render are held decoded: held whole, a closure of 15,000 files
 * was 15,000 decoded entries that every young-generation collection of
 * the export copied, then promoted.
 */
class DirectoryArrivals {
  private readonly got = new Map<string, Directory | Uint8Array>()
  /** Encoded ones the walk decoded, until the render takes them. */
  private readonly decoded = new Map<string, Directory>()
  private ended = false
  private waiters: Array<() => void> = []

  async pump(src: AsyncIterable<Directory>): Promise<void> {
    await this.arrivals(src, (d) => this.got.set(toHex(directoryDigest(d)), d))
  }

  async pumpEncoded(src: AsyncIterable<EncodedDirectory>): Promise<void> {
    await this.arrivals(src, (d) => this.got.set(toHex(d.digest), d.bytes))
  }

  private async arrivals<T>(src: AsyncIterable<T>, add: (d: T) => void): Promise<void> {
    try {
      for await (const d of src) {
        add(d)
        this.wake()
      }
    } catch {
      // The walk falls back to single Gets, which fail with the store's error.
    } finally {
      this.ended = true
      this.wake()
    }
  }

  /** For the walk: the Directory, decoded once for the render's get() that follows. */
  async enter(digest: B3Digest): Promise<Directory | undefined> {
    const key = toHex(digest)
    const d = await this.arrived(key)
    if (!(d instanceof Uint8Array)) return d
    const dir = decodeValidated(d)
    this.decoded.set(key, dir)
    return dir
  }

  /** For the render: the Directory, as the walk decoded it if it did. */
  async get(digest: B3Digest): Promise<Directory | undefined> {
    const key = toHex(digest)
    const dir = this.decoded.get(key)
    if (dir) {
      this.decoded.delete(key)
      return dir
    }
    const d = await this.arrived(key)
    return d instanceof Uint8Array ? decodeValidated(d) : d
  }

  private async arrived(key: string): Promise<Directory | Uint8Array | undefined> {
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

/** A Directory's canonical bytes decoded, and checked as a store checks what it serves (SPEC 2.1). */
function decodeValidated(bytes: Uint8Array): Directory {
  const dir = decodeDirectory(bytes)
  validateDirectory(dir)
  return dir
}

/** The files under Directory `root` in NAR order, each handed to `each` (which may wait for room). */
async function walkFiles(root: B3Digest, dirs: DirectoryArrivals, each: (f: FileNode) => Promise<void> | void, signal: AbortSignal): Promise<void> {
  // An explicit stack of entry lists, innermost last: any depth works.
  const open: Array<{ entries: Node[]; next: number }> = []
  const enter = async (digest: B3Digest) => {
    const dir = await dirs.enter(digest)
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
    if (node.kind === 'file') {
      const waiting = each(node)
      if (waiting) await waiting
    }
    else if (node.kind === 'directory' && !(await enter(node.digest))) return
  }
}
