import { toHex } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import { Catalog, CatalogBuilder, type CatalogFormat, damage } from './catalog.js'
import { type LocalRoot, packOwner } from './layout.js'
import { type ChunkRef, readManifest } from './pack.js'

/**
 * The chunks' catalog, `blobs/chunk-catalog` (catalog.ts): every chunk a
 * pack it names holds itself, as digest[32] u32le(size) u32le(stored)
 * u64le(offset) u8(codec) pad[3], and the pack's number. Loading the index
 * read every pack's manifest: an import of one 3 MB file into a store of
 * 300 packs took 352 ms of CPU, 220 in an empty store, and more with
 * every large file stored.
 */
const FORMAT: CatalogFormat = { magic: Buffer.from('TVXCHNK1'), stride: 32 + 4 + 4 + 8 + 4 + 4, what: 'chunk catalog' }
/** Packs outside the catalog whose manifests are read one by one before a commit writes a new catalog. */
const FEW_PACKS = 16

/** A catalog loaded, with which of the packs it names are still there. */
interface LoadedCatalog {
  catalog: Catalog
  present: boolean[]
}

/**
 * Where every chunk stored in a published pack lives, for deduplication
 * and for reading chunks by digest. Loaded once per process: the
 * catalog, and the manifests of the packs it does not name; packs
 * published by this process are added as they appear (packs of other
 * processes meanwhile only cost dedup). A commit that leaves more than
 * FEW_PACKS packs outside the catalog writes a new one (consolidate).
 */
export class ChunkIndex {
  /** Chunks of the packs the catalog does not name, by hex digest. */
  private readonly map = new Map<string, ChunkRef>()
  /** Those packs, with their own chunks (what the next catalog takes in). */
  private readonly outside = new Map<string, ChunkRef[]>()
  private catalog: LoadedCatalog | undefined
  private loaded = false

  constructor(private readonly root: LocalRoot) {}

  private load(): void {
    if (this.loaded) return
    this.loaded = true
    const packs = new Map<string, string>()
    for (const { name, file } of this.root.shardFiles('blobs')) {
      const self = packOwner(name)
      if (self !== undefined) packs.set(self, file)
    }
    let catalog: Catalog | undefined
    try {
      catalog = Catalog.read(this.root.chunkCatalogPath, FORMAT)
    } catch (e) {
      // Damaged (a torn write, a flipped bit): the manifests are read one by one, and the next consolidation replaces it.
      if (!(e instanceof IntegrityError)) throw e
    }
    this.catalog = catalog && { catalog, present: catalog.owners.map((p) => packs.has(p)) }
    const covered = new Set(catalog?.owners)
    for (const [self, file] of packs) if (!covered.has(self)) this.addPack(self, readManifest(file, self) ?? [])
  }

  /** Forgets everything (a sweep may have deleted packs); reloaded on next use. */
  reset(): void {
    this.map.clear()
    this.outside.clear()
    this.catalog = undefined
    this.loaded = false
  }

  get(digest: Uint8Array): ChunkRef | undefined {
    return this.byHex(toHex(digest), digest)
  }

  /** `digest`: the bytes of `hex`, where the caller has them (the catalog is searched by bytes). */
  byHex(hex: string, digest?: Uint8Array): ChunkRef | undefined {
    this.load()
    return this.find(hex, digest)
  }

  /** Whether the index is loaded (ifLoaded can answer): a caller asks first and saves hex-encoding a digest per lookup. */
  get isLoaded(): boolean {
    return this.loaded
  }

  /** Like byHex, but only once the index is loaded: undefined, without a scan of every pack, before. */
  ifLoaded(hex: string, digest?: Uint8Array): ChunkRef | undefined {
    return this.loaded ? this.find(hex, digest) : undefined
  }

  /** Records the chunks a published pack holds itself. */
  addPack(self: string, entries: ChunkRef[]): void {
    const own = entries.filter((e) => e.pack === self)
    if (!this.outside.has(self)) this.outside.set(self, own)
    for (const e of own) if (!this.map.has(toHex(e.digest))) this.map.set(toHex(e.digest), e)
  }

  /**
   * Once more than FEW_PACKS packs are outside the catalog, writes one
   * that names them and the packs of the last still there (after a
   * writer's commit that published a pack). A pack a sweep removes
   * meanwhile is named but skipped, as any gone pack is. A failure leaves
   * the old catalog: it is only ever a shortcut.
   */
  async consolidate(): Promise<void> {
    if (this.loaded && this.outside.size > FEW_PACKS) await this.writeCatalog()
  }

  /** After a sweep (writers held off): a catalog naming packs it deleted is written again without them; `anyway` (verify's repair): from what is there, whatever the last one was. */
  async rewriteCatalog(anyway = false): Promise<void> {
    this.reset()
    this.load()
    if (anyway ? this.outside.size > 0 : this.catalog?.present.includes(false)) await this.writeCatalog()
  }

  /** Why the catalog is damaged, or undefined if it is sound or absent (verify). */
  catalogDamage(): string | undefined {
    return damage(() => Catalog.read(this.root.chunkCatalogPath, FORMAT))
  }

  private async writeCatalog(): Promise<void> {
    const c = this.catalog
    const out = new CatalogBuilder(FORMAT, this.map.size + (c?.catalog.count ?? 0))
    if (c) out.carry(c.catalog, (n) => c.present[n]!)
    const fields = Buffer.alloc(FORMAT.stride)
    for (const [pack, chunks] of this.outside) {
      for (const e of chunks) {
        fields.set(e.digest, 0)
        fields.writeUInt32LE(e.size, 32)
        fields.writeUInt32LE(e.stored, 36)
        fields.writeBigUInt64LE(BigInt(e.offset), 40)
        fields[48] = e.codec
        out.add(pack, fields)
      }
    }
    // The new catalog stands in for the manifests it names from the next lookup on.
    if (await out.publish(this.root, this.root.chunkCatalogPath)) this.reset()
  }

  private find(hex: string, digest?: Uint8Array): ChunkRef | undefined {
    const known = this.map.get(hex)
    const c = this.catalog
    if (known || !c) return known
    const e = c.catalog.find(digest ?? Buffer.from(hex, 'hex'), (n) => c.present[n]!)
    if (e === undefined) return undefined
    const entry = c.catalog.entry(e)
    return {
      digest: Buffer.from(entry.subarray(0, 32)),
      size: entry.readUInt32LE(32),
      stored: entry.readUInt32LE(36),
      offset: entry.readUInt32LE(44) * 0x1_0000_0000 + entry.readUInt32LE(40),
      codec: entry[48] as 0 | 1,
      pack: c.catalog.owners[c.catalog.ownerOf(e)]!,
    }
  }
}
