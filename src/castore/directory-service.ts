import { IntegrityError, InvalidInputError } from '../errors.js'
import { type B3Digest, b3Display, toHex } from './digest.js'
import { type Directory, directoryDigest, directorySize, validateDirectory } from './directory.js'
import type { FileNode } from './node.js'

/** Merkle-DAG storage of Directory messages, keyed by their canonical digest. */
export interface DirectoryService {
  get(digest: B3Digest): Promise<Directory | undefined>
  /** The root, then breadth-first every Directory below it, each once. Empty if the root is absent. */
  getClosure(root: B3Digest): AsyncIterable<Directory>
  /** Stores a closure sent leaves first; returns the digest of the last (root) Directory. */
  putClosure(dirs: Iterable<Directory> | AsyncIterable<Directory>): Promise<B3Digest>
}

/** Why a file node's size is a lie, or undefined when it is right. */
export function wrongFileSize(node: Pick<FileNode, 'name' | 'digest' | 'size'>, actual: number): string | undefined {
  if (node.size === actual) return undefined
  return `file ${JSON.stringify(Buffer.from(node.name).toString('utf8'))} claims ${node.size} bytes, but blob ${b3Display(node.digest)} has ${actual}`
}

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
  private last: B3Digest | undefined

  constructor(
    private readonly stored?: (d: B3Digest) => Promise<Directory | undefined>,
    private readonly blobSize?: (d: B3Digest) => Promise<number | undefined>,
  ) {}

  /** Validates and returns the digest of `dir`. */
  async add(dir: Directory): Promise<B3Digest> {
    validateDirectory(dir)
    if (this.blobSize) {
      for (const f of dir.files) {
        const size = await this.blobSize(f.digest)
        const why = size === undefined ? undefined : wrongFileSize(f, size)
        if (why) throw new InvalidInputError(`directory entry: ${why}`)
      }
    }
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
    const digest = directoryDigest(dir)
    const key = toHex(digest)
    if (!this.sizes.has(key)) {
      this.sizes.set(key, directorySize(dir))
      this.unreferenced.add(key)
    }
    this.last = digest
    return digest
  }

  finish(): B3Digest {
    if (!this.last) throw new InvalidInputError('empty directory closure')
    if (this.unreferenced.size !== 1 || !this.unreferenced.has(toHex(this.last))) {
      throw new InvalidInputError('directory closure is not connected: the last directory must be its only root')
    }
    return this.last
  }
}

/** Breadth-first walk shared by backends: each digest fetched and emitted once. */
export async function* walkClosure(
  root: B3Digest,
  get: (d: B3Digest) => Promise<Directory | undefined>,
): AsyncGenerator<Directory> {
  const first = await get(root)
  if (!first) return
  const seen = new Set<string>([toHex(root)])
  const queue: Directory[] = [first]
  for (let i = 0; i < queue.length; i++) {
    const dir = queue[i]!
    yield dir
    for (const child of dir.directories) {
      const key = toHex(child.digest)
      if (seen.has(key)) continue
      seen.add(key)
      const d = await get(child.digest)
      if (!d) throw new IntegrityError(`directory ${b3Display(child.digest)} is missing from the store`)
      queue.push(d)
    }
  }
}
