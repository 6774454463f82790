import { type BlobInfo, type BlobService, type BlobStage, type ImmediateReads, chunkwiseCheckable, hasChunkLists, iterateSource, readAll, readsLocally, stageOrWriteThrough, verifyBlob } from './blob-service.js'
import { lentSource } from './reusable-source.js'
import { LARGER, type WholeReads } from './read-ahead.js'
import { chunksFrom, hasChunkedPuts } from './chunk-transfer.js'
import { type B3Digest, b3Display, bytesEqual, toHex } from './digest.js'
import { type Directory, directoryDigest } from './directory.js'
import type { DirectoryService } from './directory-service.js'
import type { Node } from './node.js'
import { IntegrityError, InvalidInputError, NotFoundError } from '../errors.js'
import { forEachLimit } from '../util/pool.js'

/*
 * Moving castore data from one pair of services to another, skipping what
 * the target has: what `copy` does for each path, and what the cache store
 * does to fill its near store from the far one.
 */

/** The castore half of a store: where trees are read from or written to. */
export interface Castore {
  blobs: BlobService
  directories: DirectoryService
}

/** What a transfer moved and found already there. */
export interface TransferCounts {
  blobs: { copied: number; skipped: number }
  directories: { copied: number; skipped: number }
  /** File data read from the source (chunks the target had are not counted). */
  bytes: number
}

export function newTransferCounts(): TransferCounts {
  return { blobs: { copied: 0, skipped: 0 }, directories: { copied: 0, skipped: 0 }, bytes: 0 }
}

/** Lookups in flight when asking a service what it has: pipelined, not one round trip each. */
const LOOKUPS_IN_FLIGHT = 64
/** Blob transfers at once: each waits on a round trip (and on the target's fsync). */
const BLOBS_IN_FLIGHT = 32
/** Blobs up to this size are not asked for a chunk list (a round trip from a daemon): a local store never packs them. */
const ONE_PIECE = 1 << 20

/**
 * The bytes of blob `d` for a reader that writes it to `to`: where `to`
 * reads locally and `from` does not (a daemon, a cache's far side), each
 * chunk `to` already has is read from `to` and only the others are
 * fetched from `from`. That needs `from` to list the blob's chunks (its
 * `chunks` capability) and `to` to have some (asked with pipelined has()
 * calls); otherwise the blob is read whole from `from`. So a changed large
 * file moves only its changed chunks. Reading held chunks back from a
 * target that is not local would cost a round trip per chunk and the
 * bytes twice (measured: a local -> daemon copy of a 64 MiB file with
 * 1 MiB changed took 75-100 s that way, 20 s reading it whole).
 * Undefined when `from` lacks the blob; `fetched` counts the bytes read
 * from `from`.
 */
export async function blobSource(from: BlobService, to: BlobService, d: B3Digest, fetched: (bytes: number) => void = () => {}): Promise<AsyncIterable<Uint8Array> | undefined> {
  const worthIt = readsLocally(to) && !readsLocally(from)
  const chunks = (worthIt && (await from.chunks?.(d))) || []
  const held = new Set<number>()
  if (chunks.length > 1) {
    await forEachLimit(chunks.keys(), LOOKUPS_IN_FLIGHT, async (i) => {
      if (await to.has(chunks[i]!.digest)) held.add(i)
    })
  }
  if (held.size === 0) {
    // A local source lends its read buffers (no fresh memory per piece); a target that does not know the contract gets copies (ReusableSource).
    const lent = (from as Partial<ImmediateReads>).openNow?.call(from, d, undefined, true)
    if (lent !== undefined && !(lent instanceof Uint8Array)) return lentSource(counted(lent, fetched))
    const src = lent ? iterateSource(lent) : await from.open(d)
    return src && counted(src, fetched)
  }
  async function* assembled(): AsyncGenerator<Uint8Array> {
    for (const [i, c] of chunks.entries()) {
      // A chunk found there may have gone since (a gc of the target): then it comes from the source.
      const near = held.has(i) ? await to.open(c.digest) : undefined
      const data = near ?? (await from.open(c.digest))
      if (!data) throw new NotFoundError(`chunk ${b3Display(c.digest)} of blob ${b3Display(d)} is missing from the source store`)
      yield* near ? data : counted(data, fetched)
    }
  }
  // Each chunk is checked as it is read; the whole-blob check proves the chunk list right.
  return verifyBlob(d, assembled())
}

async function* counted(src: AsyncIterable<Uint8Array>, fetched: (bytes: number) => void): AsyncGenerator<Uint8Array> {
  for await (const piece of src) {
    fetched(piece.length)
    yield piece
  }
}

/**
 * One transfer from `from` to `to`, shared by every tree it moves, so a
 * blob two trees share moves once. Within a tree, blobs go before the
 * Directories that name them, and Directories leaves first: the target
 * never holds a Directory whose children are missing.
 */
export class CastoreTransfer {
  /** Per blob: settles once the blob is visible in the target (its stage committed). */
  private readonly visible = new Map<string, Promise<void>>()
  /** Blob sizes the file nodes of the trees give (hex digest): a small blob's chunk list is not asked for. */
  private readonly sizes = new Map<string, number>()

  constructor(
    private readonly from: Castore,
    private readonly to: Castore,
    readonly counts: TransferCounts = newTransferCounts(),
  ) {}

  /** Copies the castore data under `node` that the target lacks: blobs, then Directories. */
  async tree(node: Node): Promise<void> {
    if (node.kind === 'symlink') return
    if (node.kind === 'file') {
      this.sizes.set(toHex(node.digest), node.size)
      return this.blobs([node.digest])
    }
    // A target that has the root has its whole closure (stored leaves first): it lists the blobs, and no Directory moves.
    const there = (await this.to.directories.get(node.digest)) !== undefined
    const dirs = await this.fetchDirectories(node.digest, there ? this.to : this.from)
    const files = new Map<string, B3Digest>()
    for (const d of dirs.values()) {
      for (const f of d.files) {
        files.set(toHex(f.digest), f.digest)
        this.sizes.set(toHex(f.digest), f.size)
      }
    }
    await this.blobs(files.values())
    if (there) this.counts.directories.skipped += dirs.size
    else await this.putDirectories(node.digest, dirs)
  }

  /** Copies the Directories under `root` that the target lacks, without their blobs. */
  async directories(root: B3Digest): Promise<void> {
    await this.putDirectories(root, await this.fetchDirectories(root))
  }

  private async fetchDirectories(root: B3Digest, from = this.from): Promise<Map<string, Directory>> {
    const dirs = new Map<string, Directory>()
    for await (const d of from.directories.getClosure(root)) dirs.set(toHex(directoryDigest(d)), d)
    if (dirs.size === 0) throw new NotFoundError(`directory ${b3Display(root)} is missing from the ${from === this.from ? 'source' : 'target'} store`)
    return dirs
  }

  private async putDirectories(root: B3Digest, dirs: Map<string, Directory>): Promise<void> {
    const counts = this.counts.directories
    // Only the Directories the target lacks travel (it accepts children it already has);
    // a peer that insists on whole closures in one stream gets the whole closure.
    const order = leavesFirst(root, dirs)
    // A target holding a Directory holds its closure (stored leaves first), so the parents of
    // one it lacks lack too: asked leaves first, a new tree costs a lookup per leaf, not per
    // Directory (a 10,000-deep chain through a daemon: 64 round trips, not 10,000).
    const lacking = new Set<Directory>()
    const parents = parentsOf(dirs)
    const markLacking = (d: Directory) => {
      const stack = [d]
      for (let x = stack.pop(); x; x = stack.pop()) {
        if (lacking.has(x)) continue
        lacking.add(x)
        stack.push(...(parents.get(x) ?? []))
      }
    }
    await forEachLimit(order, LOOKUPS_IN_FLIGHT, async (d) => {
      if (!lacking.has(d) && !(await this.to.directories.get(directoryDigest(d)))) markLacking(d)
    })
    counts.skipped += order.length - lacking.size
    if (lacking.size === 0) return
    const partial = order.filter((d) => lacking.has(d))
    try {
      await this.to.directories.putClosure(partial)
      counts.copied += partial.length
    } catch (e) {
      if (!(e instanceof InvalidInputError) || partial.length === order.length) throw e
      await this.to.directories.putClosure(order)
      counts.copied += order.length
      counts.skipped -= order.length - partial.length
    }
  }

  /** Copies the blobs the target lacks through one stage, made durable together. */
  async blobs(digests: Iterable<B3Digest>): Promise<void> {
    const stage = stageOrWriteThrough(this.to.blobs)
    const ours: Array<{ resolve: () => void; reject: (e: unknown) => void }> = []
    const others: Promise<void>[] = []
    const mine: B3Digest[] = []
    for (const d of digests) {
      const key = toHex(d)
      const existing = this.visible.get(key)
      if (existing) {
        others.push(existing)
        continue
      }
      let settle!: { resolve: () => void; reject: (e: unknown) => void }
      const p = new Promise<void>((resolve, reject) => (settle = { resolve, reject }))
      p.catch(() => {})
      this.visible.set(key, p)
      ours.push(settle)
      mine.push(d)
    }
    try {
      await forEachLimit(mine, BLOBS_IN_FLIGHT, (d) => this.blob(d, stage))
      await stage.commit()
    } catch (e) {
      await stage.abort()
      for (const s of ours) s.reject(e)
      throw e
    }
    for (const s of ours) s.resolve()
    // Blobs another tree is moving must be visible before our Directories refer to them.
    await Promise.all(others)
  }

  private async blob(d: B3Digest, stage: BlobStage): Promise<void> {
    if (await this.to.blobs.has(d)) {
      this.counts.blobs.skipped++
      return
    }
    const fetched = (n: number) => (this.counts.bytes += n)
    const small = await this.small(d, fetched)
    const info = small ? await stage.put(small, { digest: d }) : ((await this.byChunks(d, stage, fetched)) ?? (await stage.put(await this.whole(d, stage, fetched))))
    if (!bytesEqual(info.digest, d)) throw new IntegrityError(`blob ${b3Display(d)} arrived as ${b3Display(info.digest)}`)
    this.counts.blobs.copied++
  }

  /**
   * A small blob (its node says up to ONE_PIECE) whole and checked, where
   * that saves a call per blob: read whole from a daemon (in a batch of
   * many, WholeReads), or read whole from a local source for a daemon
   * target (put in a batch). Undefined where neither applies, or for a
   * blob larger than its node says (then it is read as any other).
   */
  private async small(d: B3Digest, fetched: (n: number) => void): Promise<Uint8Array | undefined> {
    const size = this.sizes.get(toHex(d))
    if (size === undefined || size > ONE_PIECE) return undefined
    const { readWhole } = this.from.blobs as Partial<WholeReads>
    if (readWhole) {
      const data = await readWhole.call(this.from.blobs, d, size)
      if (data === undefined) throw new NotFoundError(`blob ${b3Display(d)} is missing from the source store`)
      if (data === LARGER) return undefined
      fetched(data.length)
      return data
    }
    if (!readsLocally(this.from.blobs) || readsLocally(this.to.blobs)) return undefined
    const src = await this.from.blobs.open(d)
    if (!src) throw new NotFoundError(`blob ${b3Display(d)} is missing from the source store`)
    // A local store checks what it reads: the bytes match `d`.
    const data = await readAll(src)
    fetched(data.length)
    return data
  }

  /**
   * A large blob written by the target from the source's chunk list, where
   * both can (a local target, a source listing chunks: a local store or a
   * daemon): only the chunks the target lacks move, and it does not cut
   * the blob into chunks again. Undefined where that does not apply.
   */
  private async byChunks(d: B3Digest, stage: BlobStage, fetched: (n: number) => void): Promise<BlobInfo | undefined> {
    const size = this.sizes.get(toHex(d))
    if (!hasChunkedPuts(stage) || !hasChunkLists(this.from.blobs) || (size !== undefined && size <= ONE_PIECE)) return undefined
    const chunks = await this.from.blobs.chunks(d)
    if (!chunks || chunks.length < 2 || !chunkwiseCheckable(chunks)) return undefined
    return stage.putChunks(d, chunks, chunksFrom(this.from.blobs, d, chunks, fetched))
  }

  /**
   * The bytes of blob `d` for stage.put. A stage that writes from chunk
   * lists was offered the list already where it helps: the blob is read
   * whole (no Stat per small blob); for others blobSource may assemble it
   * from chunks the target holds.
   */
  private async whole(d: B3Digest, stage: BlobStage, fetched: (n: number) => void): Promise<AsyncIterable<Uint8Array>> {
    const chunkwise = hasChunkedPuts(stage)
    const src = chunkwise ? await this.from.blobs.open(d) : await blobSource(this.from.blobs, this.to.blobs, d, fetched)
    if (!src) throw new NotFoundError(`blob ${b3Display(d)} is missing from the source store`)
    return chunkwise ? counted(src, fetched) : src
  }
}

/** Each Directory's parents within `dirs` (a Directory two parents share has both). */
function parentsOf(dirs: Map<string, Directory>): Map<Directory, Directory[]> {
  const parents = new Map<Directory, Directory[]>()
  for (const d of dirs.values()) {
    for (const c of d.directories) {
      const child = dirs.get(toHex(c.digest))
      if (!child) continue
      const list = parents.get(child)
      if (list) list.push(d)
      else parents.set(child, [d])
    }
  }
  return parents
}

/** Post-order over the DAG: every Directory after all of its children. An explicit stack: any depth works. */
function leavesFirst(root: B3Digest, dirs: Map<string, Directory>): Directory[] {
  const out: Directory[] = []
  const seen = new Set<string>()
  const lookup = (d: B3Digest) => {
    const dir = dirs.get(toHex(d))
    if (!dir) throw new IntegrityError(`directory ${b3Display(d)} is missing from the source store`)
    return dir
  }
  seen.add(toHex(root))
  // Each frame: a Directory and how many of its children were handled.
  const stack = [{ dir: lookup(root), next: 0 }]
  while (stack.length > 0) {
    const top = stack.at(-1)!
    if (top.next === top.dir.directories.length) {
      out.push(top.dir)
      stack.pop()
      continue
    }
    const child = top.dir.directories[top.next++]!.digest
    const key = toHex(child)
    if (seen.has(key)) continue
    seen.add(key)
    stack.push({ dir: lookup(child), next: 0 })
  }
  return out
}
