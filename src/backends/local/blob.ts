import fsSync from 'node:fs'
import path from 'node:path'
import { type BlobInfo, type BlobService, type BlobStage, type ByteSource, type Staging, abortableSource, checkedBuffer, iterateSource, verifyBlob } from '../../castore/blob-service.js'
import { type B3Digest, b3, b3Display, b3Hasher, binaryKey, requireDigestLength, toHex } from '../../castore/digest.js'
import { Batcher } from '../../util/batcher.js'
import { chunkStream } from '../../castore/chunker.js'
import { isReusable } from '../../castore/reusable-source.js'
import type { ChunkMeta, ImmediateReads, LocalReads } from '../../castore/blob-service.js'
import type { ChunkedPuts, ChunkFetch, PackFiles, UncheckedReads } from '../../castore/chunk-transfer.js'
import { fillPackFromChunks } from './chunk-list-pack.js'
import { ChunkReader, type ChunkRef, PackWriter, manifestEntries, readFull, readManifest, readPackedBlob } from './pack.js'
import { ObjectGraph } from './object-graph.js'
import { BundleWriter, MemberReader, readBundleIndex } from './bundle.js'
import type { Freshness } from './bundle-set.js'
import { callerInput, onFile } from './io-errors.js'
import { IntegrityError } from '../../errors.js'
import type { LocalRoot } from './layout.js'
import type { WriteSession } from './locks.js'
import { abortable } from '../../util/abortable.js'
import type { CallOptions } from '../../util/call-options.js'

const READ_CHUNK = 1 << 20
/** Blobs up to this size are read and written with one synchronous call. */
const SMALL_BLOB = 1 << 20
/**
 * Bytes of a pack read at once when a whole blob is read (its chunks are
 * mostly consecutive). Two such buffers are alive per reader (one being
 * used, one the whole-blob check holds back), per concurrent download of
 * a binary cache. With reads ahead in the thread pool (three alive), 16
 * downloads of a large NAR peaked at ~330 MiB of RSS with 1 MiB, ~180 MiB
 * with 256 KiB (512 KiB: ~215 MiB).
 */
const PACK_READ_AHEAD = 256 << 10
/**
 * A pack at least this large is read with the check thread's help
 * (check-thread.ts). The thread costs ~80 ms of CPU to start (once per
 * process, on the other core), and saves about half of the read and
 * BLAKE3 time of what it helps with (~0.2 s per GiB on two free cores):
 * a tree of a few files of a few MiB is better read on one thread.
 */
const SHARE_ABOVE = 64 << 20
/** How a lent read of a pack file goes: with the check thread for a large one. */
const sharing = (file: string): true | 'shared' => (fsSync.statSync(file, { throwIfNoEntry: false })?.size ?? 0) >= SHARE_ABOVE ? 'shared' : true
/** Packs held open at most for reads of single chunks. */
const MAX_OPEN_PACKS = 32
/**
 * A stage that stores at most this many new small blobs writes them as
 * plain files; more go into one bundle, the first ones too: an import of a
 * few files costs no bundle (and stores of many small imports no pile of
 * tiny bundles for every lookup to search), and one of many costs one
 * file to sync and rename, not that many more (each an fsync of the file
 * and of its folder at commit).
 */
const PLAIN_FIRST = 16
/**
 * The first small blobs are held in memory (copies) until the stage knows
 * which they become, up to this many bytes; past it they go to plain temp
 * files at once, as before, so a stage never holds more than this.
 */
const HELD_BYTES = 1 << 20
/**
 * A bundle is finished, and the stage's next small blobs go to a new one,
 * at this many members or bytes: the index a stage holds for it, and what
 * gc copies to compact it, stay bounded however large the import.
 */
const BUNDLE_MEMBERS = 1 << 16
const BUNDLE_BYTES = 256 << 20
/** Blob sizes remembered at most (then forgotten all at once): a few MiB of memory. */
const MAX_KNOWN_SIZES = 1 << 16

/** A blob written to a temp file (or found already stored: no tmp). */
interface Written extends BlobInfo {
  tmp?: string
  /** For a pack: its chunk list, indexed once the pack is published. */
  chunks?: ChunkRef[]
}

/**
 * What every view of a store's blobs shares (the store's own, and one per
 * write session): caches of what is stored, files kept open for reads,
 * and the batches that group concurrent puts' syncs. One per store.
 */
export class SharedBlobState {
  /** Temp files made durable together, before they are renamed into place. */
  readonly durable: Batcher<string>
  /** Renames made durable together (fsync of the directories renamed into). */
  readonly named: Batcher<undefined>
  /**
   * Sizes of blobs this process stored or looked up, by hex digest, so the
   * size checks of a fresh import's Directories and PathInfo cost no
   * syscalls. Like the chunk index, forgotten after a sweep.
   */
  readonly knownSizes = new Map<string, number>()
  /** Packs kept open for reads of single chunks (a tree's small blobs stored in packs): closed by a sweep, or when too many. */
  readonly chunkReader: ChunkReader
  /** Bundles kept open for reads of their members: closed by a sweep, or when too many. */
  readonly memberReader = new MemberReader(MAX_OPEN_PACKS)

  constructor(root: LocalRoot) {
    this.durable = new Batcher((tmps) => root.syncFiles(tmps))
    this.named = new Batcher(() => root.sync())
    this.chunkReader = new ChunkReader((hex) => root.packPath(hex), true, MAX_OPEN_PACKS)
    root.onSweep(() => {
      this.knownSizes.clear()
      this.chunkReader.close()
      this.memberReader.close()
    })
  }
}

export class LocalBlobService implements BlobService, Staging, LocalReads, ImmediateReads, UncheckedReads, PackFiles {
  readonly readsLocally = true
  private readonly durable: Batcher<string>
  private readonly named: Batcher<undefined>
  private readonly knownSizes: Map<string, number>
  private readonly chunkReader: ChunkReader
  private readonly memberReader: MemberReader

  /**
   * `objects`: the store's object graph, whose chunk index dedups writes and finds chunks read by their own digest.
   * `shared`: the store's caches and batches (SharedBlobState). `session`: the write session this view reads
   * and writes for (what it finds stored and what it publishes is relied on there), if any.
   */
  constructor(
    private readonly root: LocalRoot,
    private readonly objects: ObjectGraph,
    shared: SharedBlobState,
    private readonly session?: WriteSession,
  ) {
    ;({ durable: this.durable, named: this.named, knownSizes: this.knownSizes, chunkReader: this.chunkReader, memberReader: this.memberReader } = shared)
  }

  private rememberSize(hex: string, size: number): void {
    if (this.knownSizes.size >= MAX_KNOWN_SIZES) this.knownSizes.clear()
    this.knownSizes.set(hex, size)
  }

  private path(d: B3Digest): string {
    return this.root.objectPath('blobs', toHex(d))
  }

  private readonly packPath = (hex: string) => this.root.packPath(hex)

  /** Where a written blob goes: a plain file, or a pack. */
  private finalPath(w: Written): string {
    return w.chunks ? this.packPath(toHex(w.digest)) : this.path(w.digest)
  }

  private async publish(w: Written): Promise<void> {
    await this.root.publish(w.tmp!, this.finalPath(w), this.session)
    if (w.chunks) this.objects.chunks.addPack(toHex(w.digest), w.chunks)
    this.rememberSize(toHex(w.digest), w.size)
  }

  /** Plain blob: its file size; pack: the sum of its chunks; chunk of a pack: its size in the index. Reads no data. */
  async size(d: B3Digest): Promise<number | undefined> {
    return this.sizeNow(d)
  }

  /** size() without a promise: the admission check of a fresh import looks up every file's. */
  sizeNow(d: B3Digest): number | undefined {
    const hex = toHex(requireDigestLength(d))
    let size = this.knownSizes.get(hex)
    if (size !== undefined) return size
    const at = this.objects.locate(hex)
    size =
      at?.kind === 'plain' ? at.size : at?.kind === 'chunk' ? at.ref.size : at?.kind === 'member' ? at.member.size : at && readManifest(at.file, hex)?.reduce((sum, c) => sum + c.size, 0)
    if (size !== undefined) this.rememberSize(hex, size)
    return size
  }

  /** A blob's chunks: empty for a plain blob, undefined if absent. */
  async chunks(d: B3Digest): Promise<ChunkMeta[] | undefined> {
    requireDigestLength(d)
    const manifest = readManifest(this.packPath(toHex(d)), toHex(d))
    if (manifest) return manifest.map((c) => ({ digest: c.digest, size: c.size }))
    return fsSync.existsSync(this.path(d)) || this.objects.bundles.find(d, 'force') ? [] : undefined
  }

  /**
   * Plain blob, pack, a chunk of a pack (readable by its digest too) or a bundle member. No
   * exception when absent. A write session relies on what it found. A
   * bundle another process published in the last REFRESH_MS may be missed:
   * a false "absent" costs a copy sent again, where relisting the bundles
   * for every absent blob of a copy would cost a readdir each.
   */
  async has(d: B3Digest): Promise<boolean> {
    return this.storedAs(requireDigestLength(d), false, 'cheap') !== undefined
  }

  /**
   * Whether a small blob may be stored, asked without a syscall where the
   * indexes in memory and the shard's listing can say (ObjectGraph.locateSmall):
   * false may miss one another process just published (a copy sent again),
   * true may name one a sweep elsewhere just took, so has() confirms it.
   * A daemon's small Puts ask this first: has() stat'ed twice per new blob,
   * most of what putting a small blob cost the daemon.
   */
  smallBlobKnown(d: B3Digest): boolean {
    return this.objects.locateSmall(toHex(requireDigestLength(d)), d) !== undefined
  }

  /** The file holding `d` (recorded as relied on by the current write session), or undefined. `small`, `fresh`: see ObjectGraph.locate. */
  private storedAs(d: B3Digest, small = false, fresh: Freshness = 'force'): string | undefined {
    const hex = toHex(d)
    const at = this.objects.locate(hex, small, fresh, d)
    if (at) this.session?.rely(ObjectGraph.reliance(hex, at))
    return at?.file
  }

  /** Whether a small blob about to be written is stored already (ObjectGraph.locateSmall), relied on by the session if so. */
  private storedSmall(d: B3Digest): boolean {
    const hex = toHex(d)
    const at = this.objects.locateSmall(hex, d)
    if (at) this.session?.rely(ObjectGraph.reliance(hex, at))
    return at !== undefined
  }

  /** An aborted signal ends the read and closes its files, whether or not anyone reads on. */
  async open(d: B3Digest, opts?: CallOptions): Promise<AsyncIterable<Uint8Array> | undefined> {
    opts?.signal?.throwIfAborted()
    const found = this.openNow(d)
    const data = found instanceof Uint8Array ? iterateSource(found) : found
    return data && opts?.signal ? abortable(data, opts.signal) : data
  }

  /**
   * A blob found without a promise: up to SMALL_BLOB (most files of a
   * tree) read and checked whole with synchronous calls (microseconds,
   * where the async route costs a thread-pool round trip each), a larger
   * one as a stream checked chunk by chunk and whole. Once the chunk index
   * is loaded it is asked first, so a blob stored as a chunk of a pack
   * costs no failed opens and its pack stays open for the next one.
   */
  openNow(d: B3Digest, sizeHint?: number, lend = false): Uint8Array | AsyncIterable<Uint8Array> | undefined {
    const hex = toHex(requireDigestLength(d))
    const chunk = this.objects.chunks.ifLoaded(hex, d)
    if (chunk) {
      const data = this.readChunk(d, chunk)
      if (data) return data
    }
    // A loaded bundle index is memory: asking it first saves a failing open per bundled blob.
    const bundled = this.objects.bundles.isLoaded ? this.readMember(d, 'none') : undefined
    if (bundled) return bundled
    const file = this.path(d)
    let fd: number
    try {
      fd = fsSync.openSync(file, 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return this.openChunked(d, lend)
      throw e
    }
    let handedOn = false
    try {
      if (sizeHint !== undefined && sizeHint <= SMALL_BLOB) {
        // The size its node gives: one read, no fstat. A file of another size is read again below, so that the caller sees the true one.
        const buf = Buffer.allocUnsafe(sizeHint + 1)
        if (readFull(fd, buf, 0, file) === sizeHint) return checkedBuffer(d, buf.subarray(0, sizeHint))
      }
      const size = fsSync.fstatSync(fd).size
      if (size <= SMALL_BLOB) {
        const buf = Buffer.allocUnsafe(size)
        return checkedBuffer(d, buf.subarray(0, readFull(fd, buf, 0, file)))
      }
      handedOn = true
      return verifyBlob(d, iterateSource(readPlain(fd, file)))
    } finally {
      // readPlain closes it when done.
      if (!handedOn) fsSync.closeSync(fd)
    }
  }

  /**
   * A plain blob of exactly `size` bytes read straight into `into` at `at`
   * (room for size + 1 there) and checked in place: a renderer copies no
   * small file and allocates nothing for it. False, with nothing usable
   * read, when it is stored otherwise (a chunk of a pack), absent, or of
   * another size: openNow then says which.
   */
  readInto(d: B3Digest, size: number, into: Uint8Array, at: number): boolean {
    requireDigestLength(d)
    const { chunks } = this.objects
    if (chunks.isLoaded && chunks.ifLoaded(toHex(d), d)) return false
    const m = this.objects.bundles.ifLoaded(d)
    if (m) {
      if (m.member.size !== size) return false
      try {
        checkedBuffer(d, this.memberReader.read(m.bundle.file, m.member, into.subarray(at, at + size)))
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
        throw e
      }
      return true
    }
    const file = this.path(d)
    let fd: number
    try {
      fd = fsSync.openSync(file, 'r')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw e
    }
    let got: number
    try {
      got = readFull(fd, into.subarray(at, at + size + 1), 0, file)
    } finally {
      fsSync.closeSync(fd)
    }
    if (got !== size) return false
    checkedBuffer(d, into.subarray(at, at + size))
    return true
  }

  /** A packed blob, chunk by chunk; or a single chunk asked for by its own digest. */
  private openChunked(d: B3Digest, lend: boolean): AsyncIterable<Uint8Array> | Uint8Array | undefined {
    const manifest = manifestEntries(this.packPath(toHex(d)), toHex(d))
    if (manifest) {
      // Each chunk is checked before it leaves; the whole-blob check proves an unsealed manifest right (a seal already did).
      // It holds a piece back while it reads the next: no lending then.
      const chunks = iterateSource(readPackedBlob(this.packPath, manifest, PACK_READ_AHEAD, lend && manifest.sealed && sharing(this.packPath(toHex(d)))))
      return manifest.sealed ? chunks : verifyBlob(d, chunks)
    }
    // Bundles first: loading their indexes is what reading a tree's small files needs anyway, where the chunk index scans every pack's manifest.
    const member = this.readMember(d, 'force')
    if (member) return member
    const chunk = this.objects.chunks.get(d)
    return chunk && this.readChunk(d, chunk)
  }

  /**
   * A bundle member, read and checked whole (at most SMALL_BLOB), or
   * undefined if no bundle holds it. A bundle gone since its index was
   * loaded (gc compacted it) is looked for again in a fresh listing.
   */
  private readMember(d: B3Digest, fresh: Freshness): Uint8Array | undefined {
    for (let attempt = 0; attempt < 2; attempt++) {
      const m = this.objects.bundles.find(d, attempt === 0 ? fresh : 'force')
      if (!m) return undefined
      try {
        return checkedBuffer(d, this.memberReader.read(m.bundle.file, m.member))
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
        this.objects.bundles.forget(m.bundle.name)
      }
    }
    return undefined
  }

  /** PackFiles: the pack of `d` if it is sealed and borrows no chunk, for another local store to copy whole. */
  packFile(d: B3Digest): string | undefined {
    const hex = toHex(requireDigestLength(d))
    const file = this.packPath(hex)
    const manifest = manifestEntries(file, hex)
    return manifest?.sealed && selfContained(manifest, hex) ? file : undefined
  }

  /**
   * UncheckedReads: a packed blob, or a chunk of a pack, read chunk by
   * chunk and inflated but not hashed, for a writer that checks each chunk
   * against the list (and the whole) itself. Undefined for anything else.
   */
  async readUnchecked(d: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined> {
    const hex = toHex(requireDigestLength(d))
    const manifest = manifestEntries(this.packPath(hex), hex)
    const chunk = manifest ? undefined : this.objects.chunks.get(d)
    if (!manifest && !chunk) return undefined
    const refs = manifest ?? [chunk!]
    const reader = new ChunkReader(this.packPath, false)
    return iterateSource(
      (function* () {
        try {
          for (const r of refs) yield reader.read(r)
        } finally {
          reader.close()
        }
      })(),
    )
  }

  /** A chunk read by its own digest, checked; undefined if its pack is gone (a sweep since the index was loaded). */
  private readChunk(d: B3Digest, ref: ChunkRef): Uint8Array | undefined {
    try {
      return checkedBuffer(d, this.chunkReader.read(ref))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw e
    }
  }

  /** A single blob, durable when this returns: temp file, fsync, rename, directory fsync. */
  async put(src: ByteSource, opts?: CallOptions): Promise<BlobInfo> {
    const w = await this.write(src, opts)
    if (w.tmp) {
      try {
        // Concurrent puts (a daemon's clients) share their fsyncs: group commit.
        await this.durable.add(w.tmp)
        await this.root.commit(this.session, async () => {
          await this.publish(w)
          await this.named.add(undefined)
        })
      } catch (e) {
        await this.root.discard(w.tmp)
        throw e
      }
      if (w.chunks) await this.objects.chunks.consolidate()
    }
    return { digest: w.digest, size: w.size }
  }

  /**
   * Many blobs made durable together: temp files are written without
   * fsync, and commit() flushes them all at once (one syncfs instead of an
   * fsync per file), then renames them into place and syncs the renames.
   * Nothing is visible under a final name before its bytes are on disk.
   */
  stage(): BlobStage & ChunkedPuts {
    // Blobs other processes published since the last stage started are seen by this one's lookups.
    this.objects.forgetListings()
    const pending = new Map<string, Written>()
    /**
     * Small blobs written to temp files or the bundle by this stage: a copy of one (empty files, duplicates) is
     * not written again. Keyed by binaryKey(): one per file of an import, held to commit.
     */
    const written = new Set<string>()
    const inFlight = new Set<Promise<Written>>()
    /** The small blobs past the first PLAIN_FIRST (and those held), written into a bundle (the last of `bundles`, the others full and finished) published by commit. */
    let bundles: Array<{ writer: BundleWriter; name?: string }> = []
    let small = 0
    /** Of the first PLAIN_FIRST small blobs, those held (in order) until a bundle takes them or commit writes them as plain files. */
    let held: Array<{ digest: B3Digest; data: Buffer }> = []
    let heldBytes = 0
    const intoBundle = (digest: B3Digest, data: Uint8Array) => {
      let open = bundles.at(-1)
      if (!open || open.name !== undefined) bundles.push((open = { writer: BundleWriter.create(this.root.tempPath()) }))
      open.writer.add(digest, data)
      // A full bundle is finished now: what a stage holds of its index, and what a gc compacting one copies, stay bounded.
      if (open.writer.count >= BUNDLE_MEMBERS || open.writer.size >= BUNDLE_BYTES) open.name = open.writer.finish()
    }
    const toBundle: ToBundle = (digest, data) => {
      if (small++ < PLAIN_FIRST) {
        if (heldBytes + data.length > HELD_BYTES) return false
        // A copy: the caller may reuse its buffer (a NAR reader's, a Put's message).
        held.push({ digest, data: Buffer.from(data) })
        heldBytes += data.length
        return true
      }
      // Past PLAIN_FIRST a bundle is made anyway: the held blobs go first, in the order they came (a tree's NAR order, which reads follow).
      for (const h of takeHeld()) intoBundle(h.digest, h.data)
      intoBundle(digest, data)
      return true
    }
    const takeHeld = () => {
      const taken = held
      held = []
      heldBytes = 0
      return taken
    }
    /** The held blobs as plain temp files (a stage of few small blobs: no bundle); on failure none is left. */
    const writeHeld = async (taken: Array<{ digest: B3Digest; data: Buffer }>): Promise<Written[]> => {
      const out: Written[] = []
      try {
        for (const { digest, data } of taken) {
          const tmp = this.root.tempPath()
          out.push({ digest, size: data.length, tmp })
          fsSync.writeFileSync(tmp, data, { flag: 'wx', mode: 0o444 })
        }
      } catch (e) {
        // A full disk leaves a partial file behind.
        for (const w of out) await this.root.discard(w.tmp!)
        throw e
      }
      return out
    }
    /** The stage's bundles, taken from it (commit or abort). */
    const takeBundles = () => {
      const taken = bundles
      bundles = []
      small = 0
      return taken
    }
    const dropBundles = async (taken: Array<{ writer: BundleWriter }>) => {
      for (const { writer } of taken) {
        writer.close()
        await this.root.discard(writer.file)
      }
    }
    const keep = async (w: Written) => {
      const key = toHex(w.digest)
      if (w.tmp && pending.has(key)) await this.root.discard(w.tmp)
      else if (w.tmp) pending.set(key, w)
    }
    const tracked = async (p: Promise<Written>): Promise<BlobInfo> => {
      inFlight.add(p)
      try {
        const w = await p
        await keep(w)
        return { digest: w.digest, size: w.size }
      } finally {
        inFlight.delete(p)
      }
    }
    return {
      put: (src, opts) => tracked(this.write(src, opts, written, opts?.digest, toBundle)),
      // A small blob known or bundled needs no temp file, so no await: before init() has run once, the caller puts it.
      putNow: (data, digest) => (this.root.initialized && data.length <= SMALL_BLOB ? this.storeSmallNow(data, digest, written, toBundle) : undefined),
      putChunks: async (digest, chunks, fetch, opts) => {
        opts?.signal?.throwIfAborted()
        const size = chunks.reduce((n, c) => n + c.size, 0)
        // Contents this small are never a pack: the caller puts them whole.
        if (size <= SMALL_BLOB) return undefined
        if (pending.has(toHex(digest)) || this.storedAs(digest)) return { digest, size }
        return tracked(this.writeFromChunks(digest, chunks, fetch))
      },
      commit: async () => {
        const plain = [...pending.values()]
        const taken = takeBundles()
        const stillHeld = takeHeld()
        pending.clear()
        written.clear()
        if (plain.length === 0 && taken.length === 0 && stillHeld.length === 0) return
        let staged = plain
        try {
          staged = [...plain, ...(await writeHeld(stillHeld))]
          for (const b of taken) b.name ??= b.writer.finish()
          await this.root.syncFiles([...staged.map((w) => w.tmp!), ...taken.map((b) => b.writer.file)])
          await this.root.commit(this.session, async () => {
            for (const w of staged) await this.publish(w)
            for (const b of taken) await this.publishBundle(b.writer, b.name!)
            await this.root.sync()
          })
        } catch (e) {
          // abort() no longer sees these: remove what was not renamed into place.
          for (const w of staged) await this.root.discard(w.tmp!)
          await dropBundles(taken)
          throw e
        }
        // After the commit (other writers need not wait for it): a bundle or pack a sweep removes meanwhile is skipped by readers of the catalogs.
        if (taken.length > 0) await this.objects.bundles.consolidate()
        if (staged.some((w) => w.chunks)) await this.objects.chunks.consolidate()
      },
      abort: async () => {
        await Promise.allSettled(inFlight)
        for (const w of pending.values()) await this.root.discard(w.tmp!)
        pending.clear()
        written.clear()
        takeHeld()
        await dropBundles(takeBundles())
      },
    }
  }

  /**
   * Writes `src` to a temp file while hashing it (not yet fsynced): up to
   * SMALL_BLOB as a plain file, larger as a pack of content-defined chunks.
   * Content already in the store is not written again: for a buffer that
   * is known before writing, for a stream only afterwards. On failure
   * nothing is left in tmp/. `written`: a stage's small blobs in temp files
   * or its bundle (binaryKey); one already there is not written again (no tmp returned).
   */
  private async write(src: ByteSource, opts?: CallOptions, written?: Set<string>, known?: B3Digest, toBundle?: ToBundle): Promise<Written> {
    // What is kept of a stream is copied (the head below, chunks into the pack's batches): its buffers may be reused.
    const reused = isReusable(src)
    const source = abortableSource(reused ? src.reusing() : src, opts)
    await this.root.init()
    // Its size known to be over SMALL_BLOB, no head is needed to tell: a pack. Unknown (a daemon's upload), the head tells.
    if (reused && src.size !== undefined && src.size > SMALL_BLOB) return this.writePack(callerInput(iterateSource(source)))
    return this.writeTemp(source, written, reused, known, toBundle)
  }

  /**
   * A bundle, finished and synced, renamed into place inside a commit; its
   * folder made durable by the commit's sync (and the folder's own entry,
   * for a store from before bundles, where the first one creates it).
   */
  private async publishBundle(b: BundleWriter, name: string): Promise<void> {
    const final = this.root.bundlePath(name)
    await this.root.publish(b.file, final, this.session)
    this.root.markDirty(path.dirname(path.dirname(final)))
    const index = readBundleIndex(final, name)
    if (!index) return
    this.objects.bundles.add(index)
    for (const m of index.members()) this.rememberSize(m.hex, m.size)
  }

  /**
   * A small blob stored without a temp file: one already in the store or
   * written by this stage (`written`), or a new one the stage's bundle
   * copies in. Undefined if it needs a file of its own.
   */
  private storeSmallNow(src: Uint8Array, digest: B3Digest, written?: Set<string>, toBundle?: ToBundle): Written | undefined {
    const key = binaryKey(digest)
    if (written?.has(key)) return { digest, size: src.length }
    // Contents this small are never a pack of their own: a plain file, a chunk of some pack, or a bundle member.
    if (this.storedSmall(digest)) {
      this.rememberSize(toHex(digest), src.length)
      return { digest, size: src.length }
    }
    if (toBundle?.(digest, src)) {
      written?.add(key)
      return { digest, size: src.length }
    }
    return undefined
  }

  /**
   * `known`: the BLAKE3 of a small buffer `src`, computed by the caller
   * from these bytes (StagePutOptions.digest). `toBundle`: a stage's
   * bundle, which takes a new small blob (true) or leaves it to a temp file.
   * `reused`: the source reuses its buffers (what is kept is copied).
   */
  private async writeTemp(src: ByteSource, written?: Set<string>, reused = false, known?: B3Digest, toBundle?: ToBundle): Promise<Written> {
    if (src instanceof Uint8Array && src.length <= SMALL_BLOB) {
      const digest = known ?? b3(src)
      const now = this.storeSmallNow(src, digest, written, toBundle)
      if (now) return now
      const tmp = this.root.tempPath()
      try {
        fsSync.writeFileSync(tmp, src, { flag: 'wx', mode: 0o444 })
      } catch (e) {
        // A full disk leaves a partial file behind.
        await this.root.discard(tmp)
        throw e
      }
      written?.add(binaryKey(digest))
      return { digest, size: src.length, tmp }
    }
    // A stream: look at its first SMALL_BLOB + 1 bytes to know which kind it is.
    // A failed read of the input is the caller's, not an I/O error of the store.
    const it = callerInput(iterateSource(src))[Symbol.asyncIterator]()
    const head: Uint8Array[] = []
    let headSize = 0
    let ended = false
    while (headSize <= SMALL_BLOB) {
      const r = await it.next()
      if (r.done) {
        ended = true
        break
      }
      head.push(reused ? Buffer.from(r.value) : r.value)
      headSize += r.value.length
    }
    if (ended) return this.writeTemp(Buffer.concat(head), written, false, undefined, toBundle)
    async function* all() {
      yield* head
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value
    }
    return this.writePack(all())
  }

  private async writePack(src: AsyncIterable<Uint8Array>): Promise<Written> {
    return this.intoPack(async (pack) => {
      const h = b3Hasher()
      let size = 0
      async function* tap() {
        for await (const c of src) {
          h.update(c)
          size += c.length
          yield c
        }
      }
      for await (const chunk of chunkStream(tap())) await pack.add(chunk, this.objects.chunks)
      return { digest: h.digest(), size }
    })
  }

  /**
   * A large blob written from its chunk list (ChunkedPuts): not chunked
   * again, the chunks the store holds not fetched (see fillPackFromChunks);
   * or, from another local store when this one holds none of its chunks,
   * its pack file copied whole (clonePack).
   */
  private async writeFromChunks(digest: B3Digest, chunks: ChunkMeta[], fetch: ChunkFetch): Promise<Written> {
    await this.root.init()
    if (fetch.packFile && !chunks.some((c) => this.objects.chunks.get(c.digest))) {
      const cloned = await this.clonePack(digest, fetch.packFile.file)
      if (cloned) {
        fetch.packFile.taken()
        return cloned
      }
    }
    return this.intoPack(async (pack) => ({ digest, size: await fillPackFromChunks(pack, this.objects.chunks, this.chunkReader, digest, chunks, fetch) }))
  }

  /**
   * Another local store's pack of blob `digest` (PackFiles: sealed, every
   * chunk in it), copied into a temp file by the kernel (copy_file_range,
   * or a reflink where the filesystem shares blocks), then read back and
   * checked as a reader checks it: the manifest against its seal, every
   * chunk against its digest, on two threads. The copy never passes
   * through this process, and is not chunked, hashed whole or deflated
   * again: it is the pack this store would have written, had it cut the
   * blob itself with none of its chunks stored. Undefined, nothing kept,
   * if the file is gone or not such a pack (the caller fetches the chunks).
   */
  private async clonePack(digest: B3Digest, source: string): Promise<Written | undefined> {
    const hex = toHex(digest)
    const tmp = this.root.tempPath()
    try {
      try {
        await fsSync.promises.copyFile(source, tmp, fsSync.constants.COPYFILE_EXCL | fsSync.constants.COPYFILE_FICLONE)
      } catch (e) {
        // Gone since it was named (a gc of the source): its chunks are fetched the other way, and found missing there.
        if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !fsSync.existsSync(source)) return await this.discardClone(tmp)
        throw onFile(e, tmp)
      }
      // The disk writes the copy back while it is read and checked (the fdatasync is under way in the
      // thread pool before the check, which is synchronous, begins); the commit's sync then finds little left.
      const fh = await fsSync.promises.open(tmp, 'r').catch((e) => Promise.reject(onFile(e, tmp)))
      const flushed = fh.datasync().finally(() => fh.close())
      flushed.catch(() => {})
      let size = 0
      let chunks: ChunkRef[]
      try {
        const manifest = manifestEntries(tmp, hex)
        // Decoded once: checked, read by, and (published) kept in the chunk index.
        chunks = manifest?.sealed ? [...manifest] : []
        if (chunks.length === 0 || !selfContained(chunks, hex)) return await this.discardClone(tmp)
        for (const piece of readPackedBlob(() => tmp, chunks, PACK_READ_AHEAD, sharing(tmp))) size += piece.length
      } catch (e) {
        // Its messages would name our temp file.
        if (e instanceof IntegrityError) throw new IntegrityError(`blob ${b3Display(digest)} is corrupt: ${source} does not match its chunk list`, { cause: e })
        throw e
      } finally {
        await flushed.catch(() => {})
      }
      await flushed
      // Stored meanwhile (another writer): its pack stays as it is, as intoPack leaves it.
      if (await this.has(digest)) {
        await this.root.discard(tmp)
        return { digest, size }
      }
      return { digest, size, tmp, chunks }
    } catch (e) {
      await this.root.discard(tmp)
      throw e
    }
  }

  private async discardClone(tmp: string): Promise<undefined> {
    await this.root.discard(tmp)
    return undefined
  }

  /** A pack written to a temp file by `fill`, which returns the blob it holds; nothing left in tmp/ on failure. */
  private async intoPack(fill: (pack: PackWriter) => Promise<BlobInfo>): Promise<Written> {
    const tmp = this.root.tempPath()
    const pack = await PackWriter.create(tmp).catch(async (e) => {
      await this.root.discard(tmp)
      throw e
    })
    let digest: B3Digest
    let size: number
    let chunks: ChunkRef[]
    try {
      ;({ digest, size } = await fill(pack))
      // Sealed: fill returns a digest computed from (writePack), or checked against (writeFromChunks), the very bytes written.
      chunks = await pack.finish(toHex(digest), true)
    } catch (e) {
      await pack.abort()
      await this.root.discard(tmp)
      throw e
    }
    // Chunks borrowed from older packs: those packs must outlive this session's commit.
    for (const c of chunks) if (c.pack !== toHex(digest)) this.session?.rely(this.packPath(c.pack))
    if (await this.has(digest)) {
      await this.root.discard(tmp)
      return { digest, size }
    }
    return { digest, size, tmp, chunks }
  }
}

/** Whether every chunk a manifest lists is in the pack of blob `hex` itself (walked, not gathered: a 2 GiB blob lists ~30,000). */
function selfContained(manifest: Iterable<ChunkRef>, hex: string): boolean {
  for (const c of manifest) if (c.pack !== hex) return false
  return true
}

/** Takes a new small blob into a stage's bundle (true), or leaves it to a temp file of its own (false). */
type ToBundle = (digest: B3Digest, data: Uint8Array) => boolean

/** Reads a large plain blob (a version 1 store's) in READ_CHUNK pieces, each in a fresh buffer (the consumer may keep it), and closes it. */
function* readPlain(fd: number, file: string): Generator<Uint8Array> {
  try {
    for (let pos = 0; ; ) {
      const buf = Buffer.allocUnsafe(READ_CHUNK)
      const n = readFull(fd, buf, pos, file)
      if (n === 0) return
      pos += n
      yield buf.subarray(0, n)
    }
  } finally {
    fsSync.closeSync(fd)
  }
}
