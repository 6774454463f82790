import { IntegrityError, InvalidInputError } from '../errors.js'
import type { CallOptions } from '../util/call-options.js'
import { decodeDirectory, directoryEntryCount, encodeDirectory } from './proto.js'
import { type B3Digest, b3, b3Display, toHex } from './digest.js'
import { type Directory, directoryDigest, directorySize, validateDirectory } from './directory.js'
import type { FileNode } from './node.js'

/**
 * Largest encoded Directory a store accepts. It must cross the wire as one
 * gRPC message, and tvix/snix peers keep tonic's default 4 MiB receive
 * limit; a store that held a larger one could never serve it.
 */
export const MAX_DIRECTORY_BYTES = 4 * 1024 * 1024

/** Bytes per entry beyond its name (and target): tags, lengths, digest, size, flag. */
const ENTRY_OVERHEAD = 64

/**
 * Throws unless `dir` encodes to at most MAX_DIRECTORY_BYTES. An upper
 * bound from the entries' names decides most Directories without
 * encoding them; `encoded`, if known, is used as is.
 */
export function requireServableDirectory(dir: Directory, encoded?: Uint8Array): void {
  let bound = 0
  for (const n of dir.directories) bound += n.name.length + ENTRY_OVERHEAD
  for (const n of dir.files) bound += n.name.length + ENTRY_OVERHEAD
  for (const n of dir.symlinks) bound += n.name.length + n.target.length + ENTRY_OVERHEAD
  if (bound <= MAX_DIRECTORY_BYTES) return
  const size = (encoded ?? encodeDirectory(dir)).length
  if (size > MAX_DIRECTORY_BYTES) throw tooLargeToServe(dir.directories.length + dir.files.length + dir.symlinks.length, size)
}

/** requireServableDirectory() for a Directory's canonical bytes. */
export function requireServableBytes(encoded: Uint8Array): void {
  if (encoded.length > MAX_DIRECTORY_BYTES) throw tooLargeToServe(directoryEntryCount(encoded), encoded.length)
}

const tooLargeToServe = (entries: number, size: number) =>
  new InvalidInputError(
    `a directory with ${entries} entries is ${size} bytes encoded, ` +
      `over the limit of ${MAX_DIRECTORY_BYTES} bytes (4 MiB, one gRPC message) a Directory can be served with`,
  )

/** Merkle-DAG storage of Directory messages, keyed by their canonical digest. */
export interface DirectoryService {
  get(digest: B3Digest, opts?: CallOptions): Promise<Directory | undefined>
  /**
   * A stored Directory's canonical bytes, checked against its digest but
   * not decoded (a backend that keeps them may offer this): a server
   * sends them on as they are, at an eighth of the memory of decoding.
   */
  getEncoded?(digest: B3Digest, opts?: CallOptions): Promise<Uint8Array | undefined>
  /** The root, then breadth-first every Directory below it, each once. Empty if the root is absent. */
  getClosure(root: B3Digest, opts?: CallOptions): AsyncIterable<Directory>
  /** Stores a closure sent leaves first; returns the digest of the last (root) Directory. */
  putClosure(dirs: Iterable<Directory> | AsyncIterable<Directory>, opts?: CallOptions): Promise<B3Digest>
  /** Writes of validated Directories that stay invisible until commit(), for closures too large to hold in memory. */
  stage(opts?: CallOptions): DirectoryStage
}

export interface DirectoryStage {
  /** Keeps a Directory (validated by the caller; its canonical bytes) until commit. */
  put(digest: B3Digest, bytes: Uint8Array, opts?: CallOptions): Promise<void>
  /** Makes everything put visible, in the order it was put (leaves first). */
  commit(opts?: CallOptions): Promise<void>
  abort(opts?: CallOptions): Promise<void>
  /**
   * Makes what was put so far durable without making it visible (where a
   * backend writes temp files first), so that commit, called next, waits
   * on the disk once instead of twice; run while the blobs commit.
   */
  prepare?(): Promise<void>
}

/** A stage for backends that keep Directories in memory or send them on: held, then one putClosure. */
export function bufferedStage(dirs: Pick<DirectoryService, 'putClosure'>): DirectoryStage {
  let held: Uint8Array[] = []
  return {
    put: async (_digest, bytes) => void held.push(bytes),
    commit: async (opts) => {
      const all = held
      held = []
      // Decoded one at a time as the closure is taken: a decoded Directory is ~8× its bytes.
      if (all.length > 0) await dirs.putClosure((function* () { for (const b of all) yield decodeDirectory(b) })(), opts)
    },
    abort: async () => void (held = []),
  }
}

/** Why a file node's size is a lie, or undefined when it is right. */
export function wrongFileSize(node: Pick<FileNode, 'name' | 'digest' | 'size'>, actual: number): string | undefined {
  if (node.size === actual) return undefined
  return `file ${JSON.stringify(Buffer.from(node.name).toString('utf8'))} claims ${node.size} bytes, but blob ${b3Display(node.digest)} has ${actual}`
}

/** Blobs found absent that a ClosureValidator remembers: bounded, as its memory per Directory is. */
const ABSENT_REMEMBERED = 4096

/**
 * Checks a closure as it arrives leaves-first (SPEC 3.3): each Directory
 * is valid, and each child it names was sent earlier in the same closure
 * or is already stored (`stored`, if given), with the size the parent
 * claims. Each file whose blob is stored must claim the blob's size
 * (`blobSize`, if given); absent blobs are fine here, the PathInfo that
 * finally names the tree needs them all. finish() checks the closure is
 * connected.
 */
export class ClosureValidator {
  private readonly sizes = new Map<string, number>()
  private readonly unreferenced = new Set<string>()
  private readonly absent = new Set<string>()
  private last: B3Digest | undefined

  constructor(
    private readonly stored?: (d: B3Digest) => Promise<Directory | undefined>,
    private readonly blobSize?: (d: B3Digest) => Promise<number | undefined>,
  ) {}

  /**
   * blobSize, asked once per blob found absent (up to ABSENT_REMEMBERED of them): a local
   * store looks hard for an absent blob (its bundles folder listed), and a Directory may name
   * one blob thousands of times. One that arrives meanwhile is checked by the PathInfo.
   */
  private async storedBlobSize(d: B3Digest): Promise<number | undefined> {
    const key = toHex(d)
    if (this.absent.has(key)) return undefined
    const size = await this.blobSize!(d)
    if (size === undefined) {
      if (this.absent.size >= ABSENT_REMEMBERED) this.absent.clear()
      this.absent.add(key)
    }
    return size
  }

  /** Validates and returns the digest of `dir`. */
  async add(dir: Directory): Promise<B3Digest> {
    return (await this.accept(dir)).digest
  }

  /**
   * A Directory already accepted in this closure, or stored, sent again:
   * nothing to check, it only becomes the latest. False if it is new.
   */
  repeat(digest: B3Digest): boolean {
    if (!this.sizes.has(toHex(digest))) return false
    this.last = digest
    return true
  }

  /** Validates `dir`; its digest and canonical bytes, and whether it is new to this closure. */
  async accept(dir: Directory): Promise<{ digest: B3Digest; bytes: Uint8Array; fresh: boolean }> {
    validateDirectory(dir)
    if (this.blobSize) {
      for (const f of dir.files) {
        const size = await this.storedBlobSize(f.digest)
        const why = size === undefined ? undefined : wrongFileSize(f, size)
        if (why) throw new InvalidInputError(`directory entry: ${why}`)
      }
    }
    const bytes = encodeDirectory(dir)
    requireServableDirectory(dir, bytes)
    for (const child of dir.directories) {
      const key = toHex(child.digest)
      let size = this.sizes.get(key)
      if (size === undefined && this.stored) {
        // A child the store already has: its whole closure is there (stored leaves first).
        const have = await this.stored(child.digest)
        if (have) {
          size = directorySize(have)
          this.sizes.set(key, size)
        }
      }
      if (size === undefined) {
        throw new InvalidInputError(`directory refers to ${b3Display(child.digest)}, which was neither sent before it nor stored`)
      }
      if (size !== child.size) {
        throw new InvalidInputError(`directory entry for ${b3Display(child.digest)} claims size ${child.size}, want ${size}`)
      }
      this.unreferenced.delete(key)
    }
    const digest = b3(bytes)
    const key = toHex(digest)
    const fresh = !this.sizes.has(key)
    if (fresh) {
      this.sizes.set(key, directorySize(dir))
      this.unreferenced.add(key)
    }
    this.last = digest
    return { digest, bytes, fresh }
  }

  finish(): B3Digest {
    if (!this.last) throw new InvalidInputError('no directories sent')
    if (this.unreferenced.size !== 1 || !this.unreferenced.has(toHex(this.last))) {
      throw new InvalidInputError('directory closure is not connected: the last directory must be its only root')
    }
    return this.last
  }
}

/** Breadth-first walk shared by backends: each digest fetched and emitted once; stops when `signal` aborts. */
export function walkClosure(root: B3Digest, get: (d: B3Digest) => Promise<Directory | undefined>, signal?: AbortSignal): AsyncGenerator<Directory> {
  return walkDirectories(root, get, (dir) => dir.directories.map((c) => c.digest), signal)
}

/**
 * The root, then breadth-first every Directory below it, each once, in
 * any form `get` gives (decoded, or canonical bytes); `children` names
 * the child Directories of one. A Directory is let go once its children
 * are queued: memory follows the breadth of the tree, not its size.
 */
export async function* walkDirectories<T>(
  root: B3Digest,
  get: (d: B3Digest) => Promise<T | undefined>,
  children: (dir: T) => Iterable<B3Digest>,
  signal?: AbortSignal,
): AsyncGenerator<T> {
  const first = await get(root)
  if (first === undefined) return
  const seen = new Set<string>([toHex(root)])
  let queue: T[] = [first]
  while (queue.length > 0) {
    const next: T[] = []
    for (const dir of queue) {
      yield dir
      signal?.throwIfAborted()
      for (const child of children(dir)) {
        const key = toHex(child)
        if (seen.has(key)) continue
        seen.add(key)
        const d = await get(child)
        if (d === undefined) throw new IntegrityError(`directory ${b3Display(child)} is missing from the store`)
        next.push(d)
      }
    }
    queue = next
  }
}
