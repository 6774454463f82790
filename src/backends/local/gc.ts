import fsSync from 'node:fs'
import { toHex } from '../../castore/digest.js'
import type { Node } from '../../castore/node.js'
import { NotFoundError, StillAliveError } from '../../errors.js'
import { decodePathInfo } from '../../store/proto.js'
import * as nixbase32 from '../../store/nixbase32.js'
import type { PathInfo } from '../../store/path-info.js'
import { type StorePath, absolute, hashPart } from '../../store/store-path.js'
import type { LocalStoreParts } from './parts.js'
import { type StoredObject, listObjects, objectKey } from './inventory.js'
import { storeFailure } from './io-errors.js'
import { readSmallFile, removeStaleStaging } from './layout.js'
import type { ProcessId } from './locks.js'
import { borrowedPacks, readStoredDirectory } from './object-graph.js'
import { type BundleIndex, readBundleIndex, rewriteBundle } from './bundle.js'
import type { GcOptions, GcReport } from '../../store/capabilities.js'
import { readTempRoots } from './temp-roots.js'
import { secondsSince } from '../../util/elapsed.js'

export type { GcOptions, GcReport } from '../../store/capabilities.js'

/**
 * Mark and sweep over a local store.
 *
 * Roots: the PathInfos that stay (all of them; with `prune`, the closure
 * of the GC roots by references, plus PathInfos younger than the grace
 * period or `olderThanMs`), every object younger than the grace period,
 * and every object that appeared after the first listing. Marking follows
 * root nodes into Directories, Directories into children and blobs, and
 * packs into the older packs whose chunks they use. A bundle is live
 * where its members are: one whose members are all dead is deleted, one
 * shared by live and dead members compacted (its live members copied to a
 * new bundle, made durable, then the old one deleted).
 *
 * The mark runs twice: first while writers go on (the expensive part),
 * then again, memoised, with writers held off (StoreLocks.exclusive) and
 * a fresh listing, so the sweep acts on an up-to-date picture. Deletion
 * goes PathInfos first, then Directories parents before children, then
 * packs that use other packs before those, then plain blobs, each wave
 * made durable before the next: a gc killed at any point leaves every
 * remaining object whole, with all it refers to.
 */
export async function collectGarbage(store: LocalStoreParts, opts: GcOptions): Promise<GcReport> {
  try {
    return await markAndSweep(store, opts)
  } catch (e) {
    throw storeFailure(e, store.root.dir)
  }
}

async function markAndSweep(store: LocalStoreParts, opts: GcOptions): Promise<GcReport> {
  const started = performance.now()
  // Chunks are looked up in every pack there is, this process's or not.
  store.objects.refresh()
  const marker = new Marker(store)
  // Phase 1: warm the marks without holding writers off.
  const first = listObjects(store.root)
  plan(store, marker, first, undefined, opts)
  return store.root.locks.exclusive(async () => {
    const exclusiveFrom = performance.now()
    const p = plan(store, marker, listObjects(store.root), new Set(first.keys()), opts)
    const report: GcReport = {
      dryRun: !!opts.dryRun,
      paths: p.deadPaths.map((o) => o.display),
      blobs: 0,
      packs: 0,
      directories: 0,
      tempFiles: 0,
      bytes: 0,
      keptYoung: p.keptYoung,
      seconds: 0,
      writersHeldOffSeconds: 0,
    }
    const leftovers = [...store.root.staleTemps(), ...store.root.locks.staleTokens(), ...readTempRoots(store.root.locksDir).stale]
    const waves = [[p.deadPaths.map((o) => o.obj)], deletionWaves(p.deadDirs, dirChildren), deletionWaves(p.deadPacks, packUses), [p.deadBlobs]]
    const total = p.deadPaths.length + p.deadDirs.length + p.deadPacks.length + p.deadBlobs.length + p.bundles.length
    let done = 0
    for (const stage of waves) {
      for (const wave of stage) {
        for (const o of wave) {
          if (opts.dryRun || store.root.remove(o.file)) {
            report.bytes += o.size
            if (o.kind === 'blob') report.blobs++
            else if (o.kind === 'pack') report.packs++
            else if (o.kind === 'dir') report.directories++
          }
          opts.onProgress?.(++done, total)
        }
        // Each wave durable before the next deletes what it referred to.
        if (!opts.dryRun && wave.length > 0) await store.root.sync()
      }
    }
    // Bundles refer to nothing: last, each one's live members durable in a new bundle before the old one goes.
    for (const b of p.bundles) {
      const dead = b.index.count - b.live.size
      if (opts.dryRun) {
        report.blobs += dead
        report.bytes += b.live.size === 0 ? b.obj.size : 0
      } else if (b.live.size === 0) {
        if (store.root.remove(b.obj.file)) {
          report.blobs += dead
          report.bytes += b.obj.size
        }
      } else {
        const size = (await rewriteBundle(store.root, b.index, (hex) => b.live.has(hex), 'abort'))?.size
        if (size !== undefined && store.root.remove(b.obj.file)) {
          report.blobs += dead
          report.bytes += Math.max(0, b.obj.size - size)
        }
      }
      opts.onProgress?.(++done, total)
    }
    if (!opts.dryRun && p.bundles.length > 0) await store.root.sync()
    // Catalogs that name what went would keep its entries (skipped, but read) until enough new files came.
    if (!opts.dryRun && (p.bundles.length > 0 || p.deadPacks.length > 0)) await store.objects.rewriteCatalogs()
    // After the PathInfos they served are gone (a PathInfo never lacks its entries):
    // the entries of deleted paths, and stale ones a crashed commit left.
    if (!opts.dryRun && store.pathInfos.index.prune(p.liveEntry) > 0) await store.root.sync()
    for (const f of leftovers) {
      const size = fsSync.lstatSync(f, { throwIfNoEntry: false })?.size ?? 0
      if (opts.dryRun || store.root.remove(f)) {
        report.tempFiles++
        report.bytes += size
      }
    }
    // And what a killed first write staged beside the store, before it existed.
    if (!opts.dryRun) removeStaleStaging(store.root.dir)
    if (!opts.dryRun && total > 0) store.root.locks.bumpEpoch()
    report.seconds = secondsSince(started)
    report.writersHeldOffSeconds = secondsSince(exclusiveFrom)
    return report
  }, { onWait: opts.onWait, maxWaitMs: opts.maxWaitMs, signal: opts.signal })
}

interface Plan {
  deadPaths: Array<{ obj: StoredObject; display: string }>
  deadDirs: StoredObject[]
  deadPacks: StoredObject[]
  deadBlobs: StoredObject[]
  /** Bundles with dead members: `live` the members that stay (none: the bundle goes whole). */
  bundles: Array<{ obj: StoredObject; index: BundleIndex; live: Set<string> }>
  keptYoung: number
  /** Whether a referrers index entry stays: its referrer stays and refers to the path (referrers.ts). */
  liveEntry: (referenced: string, referrer: string) => boolean
}

/**
 * Decides what goes, given a listing. In phase 2 `before` holds the first
 * listing's keys: an object missing there is new, so it is kept and keeps
 * what it refers to.
 */
function plan(store: LocalStoreParts, marker: Marker, objects: Map<string, StoredObject>, before: Set<string> | undefined, opts: GcOptions): Plan {
  const nowMs = Date.now()
  const isNew = (o: StoredObject) => before !== undefined && !before.has(objectKey(o.kind, o.name))
  const young = (o: StoredObject) => nowMs - o.mtimeMs < opts.graceMs || isNew(o)
  const infos = new Map<string, { obj: StoredObject; info?: PathInfo }>()
  for (const o of objects.values()) {
    if (o.kind !== 'pathinfo') continue
    const bytes = readSmallFile(o.file)
    let info: PathInfo | undefined
    try {
      info = bytes && decodePathInfo(bytes)
    } catch {
      info = undefined // corrupt: kept, and left to verify
    }
    if (bytes) infos.set(o.name, { obj: o, info })
  }
  // A daemon's clients' temp roots: read in each phase, the second one with writers (who add them) held off.
  const temp = readTempRoots(store.root.locksDir).live
  const keep = livePathInfos(store, infos, young, opts, temp.filter((r) => r.kind === 'pathinfo').map((r) => r.name))
  for (const name of keep) {
    const info = infos.get(name)?.info
    if (info) marker.markNode(info.node)
  }
  for (const r of temp) if (r.kind !== 'pathinfo') marker.markRoot(r.kind, r.name)
  // Unreachable yet young (or new since the first listing): roots too.
  for (const o of objects.values()) {
    if (o.kind === 'pathinfo' || marker.marked(o) || !young(o)) continue
    marker.youngRoots.add(objectKey(o.kind, o.name))
    marker.markObject(o)
  }
  let keptYoung = 0
  for (const key of marker.youngRoots) if (objects.has(key)) keptYoung++
  const dead = (kind: StoredObject['kind']) => [...objects.values()].filter((o) => o.kind === kind && !marker.marked(o))
  const deadPaths = [...infos.entries()]
    .filter(([name]) => !keep.has(name))
    .map(([, { obj, info }]) => ({ obj, display: info ? `${store.storeDir}/${Buffer.from(info.node.name).toString('utf8')}` : obj.file }))
  const liveEntry = (referenced: string, referrer: string) =>
    keep.has(referrer) && !!infos.get(referrer)?.info?.references.some((r) => nixbase32.encode(r) === referenced)
  const bundles: Plan['bundles'] = []
  for (const o of objects.values()) {
    const index = o.kind === 'bundle' ? marker.bundle(o) : undefined
    if (!index || marker.marked(o)) continue
    const live = new Set<string>()
    for (const m of index.members()) if (marker.blobMarked(m.hex)) live.add(m.hex)
    bundles.push({ obj: o, index, live })
  }
  return { deadPaths, deadDirs: dead('dir'), deadPacks: dead('pack'), deadBlobs: dead('blob'), bundles, keptYoung, liveEntry }
}

/** Hash parts of the PathInfos that stay. */
function livePathInfos(
  store: LocalStoreParts,
  infos: Map<string, { obj: StoredObject; info?: PathInfo }>,
  protectedObj: (o: StoredObject) => boolean,
  opts: GcOptions,
  tempRooted: string[],
): Set<string> {
  const refs = (name: string) => (infos.get(name)?.info?.references ?? []).map((r) => nixbase32.encode(r))
  const closure = (start: Iterable<string>) => {
    const seen = new Set<string>()
    const stack = [...start]
    while (stack.length > 0) {
      const n = stack.pop()!
      if (seen.has(n) || !infos.has(n)) continue
      seen.add(n)
      stack.push(...refs(n))
    }
    return seen
  }
  const all = new Set(infos.keys())
  if (opts.deletePaths) {
    const doomed = new Set(opts.deletePaths.map(hashPart))
    const rooted = new Map<string, string>()
    for (const r of opts.ignoreRoots ? [] : store.roots.list()) if (r.path) for (const n of closure([hashPart(r.path)])) if (!rooted.has(n)) rooted.set(n, r.name)
    for (const p of opts.deletePaths) {
      const n = hashPart(p)
      const shown = absolute(p, store.storeDir)
      const info = infos.get(n)?.info
      if (!info || Buffer.from(info.node.name).toString('utf8') !== `${n}-${p.name}`) throw new NotFoundError(`cannot delete path '${shown}': it is not in the store`)
      if (rooted.has(n)) throw new StillAliveError(`cannot delete path '${shown}' since it is still alive: GC root '${rooted.get(n)}' needs it`)
      for (const other of all) {
        if (doomed.has(other) || !refs(other).includes(n)) continue
        const by = infos.get(other)?.info
        throw new StillAliveError(`cannot delete path '${shown}' since it is still alive: '${by ? `${store.storeDir}/${Buffer.from(by.node.name).toString('utf8')}` : other}' refers to it`)
      }
    }
    return new Set([...all].filter((n) => !doomed.has(n)))
  }
  if (!opts.prune) return all
  const nowMs = Date.now()
  const start: string[] = [...tempRooted]
  for (const r of store.roots.list()) if (r.path) start.push(hashPart(r.path))
  for (const [n, { obj, info }] of infos) {
    // Kept: recent ones (an upload may still be under way), those inside the retention window, and undecodable ones (verify's job).
    if (!info || protectedObj(obj) || (opts.olderThanMs !== undefined && nowMs - obj.mtimeMs < opts.olderThanMs)) start.push(n)
  }
  return closure(start)
}

/** Marks reachable castore objects, remembering across calls (the second phase only marks what is new). */
class Marker {
  private readonly dirs = new Set<string>()
  private readonly blobs = new Set<string>()
  /** Objects kept only because they are young (for the report). */
  readonly youngRoots = new Set<string>()
  /** Bundle indexes by name, read once for both phases; null for a damaged one (kept whole: verify reports it). */
  private readonly bundles = new Map<string, BundleIndex | null>()

  constructor(private readonly store: LocalStoreParts) {}

  /** A bundle's index, or undefined if it is damaged or gone. */
  bundle(o: StoredObject): BundleIndex | undefined {
    let index = this.bundles.get(o.name)
    if (index === undefined) {
      try {
        index = readBundleIndex(o.file, o.name) ?? null
      } catch {
        index = null
      }
      this.bundles.set(o.name, index)
    }
    return index ?? undefined
  }

  blobMarked(hex: string): boolean {
    return this.blobs.has(hex)
  }

  /** A bundle is marked when all its members are (a damaged one always: it is not gc's to judge). */
  marked(o: StoredObject): boolean {
    if (o.kind === 'bundle') {
      const index = this.bundle(o)
      if (!index) return true
      for (const m of index.members()) if (!this.blobs.has(m.hex)) return false
      return true
    }
    return o.kind === 'dir' ? this.dirs.has(o.name) : this.blobs.has(o.name)
  }

  markObject(o: StoredObject): void {
    if (o.kind === 'dir') this.markDirs([o.name])
    else if (o.kind === 'blob' || o.kind === 'pack') this.markBlob(o.name)
    else if (o.kind === 'bundle') for (const m of this.bundle(o)?.members() ?? []) this.markBlob(m.hex)
  }

  /** A temp root: a blob (or chunk) or a Directory by hex digest. */
  markRoot(kind: 'blob' | 'dir', hex: string): void {
    if (kind === 'dir') this.markDirs([hex])
    else this.markBlob(hex)
  }

  markNode(n: Node): void {
    if (n.kind === 'directory') this.markDirs([toHex(n.digest)])
    else if (n.kind === 'file') this.markBlob(toHex(n.digest))
  }

  private markDirs(start: string[]): void {
    this.store.objects.walk(start, this.dirs, { blob: (hex) => this.markBlob(hex) })
  }

  /** A blob is a plain file or a pack; a pack keeps the packs it takes chunks from; a digest that is only a chunk keeps its pack. */
  private markBlob(start: string): void {
    const stack = [start]
    while (stack.length > 0) {
      const hex = stack.pop()!
      if (this.blobs.has(hex)) continue
      this.blobs.add(hex)
      const at = this.store.objects.locate(hex)
      if (at?.kind === 'pack') stack.push(...borrowedPacks(at.file, hex))
      else if (at?.kind === 'chunk') stack.push(at.ref.pack)
    }
  }
}

/** Hex digests of a stored Directory's child Directories. */
const dirChildren = (o: StoredObject) => (readStoredDirectory(o.file)?.directories ?? []).map((d) => toHex(d.digest))
const packUses = (o: StoredObject) => borrowedPacks(o.file, o.name)

/**
 * Orders dead objects so that nothing is deleted while a remaining object
 * refers to it: each wave holds objects no remaining dead object refers to.
 */
function deletionWaves(dead: StoredObject[], refs: (o: StoredObject) => string[]): StoredObject[][] {
  const byName = new Map(dead.map((o) => [o.name, o]))
  const edges = new Map<string, string[]>()
  const indegree = new Map<string, number>(dead.map((o) => [o.name, 0]))
  for (const o of dead) {
    const out = refs(o).filter((r) => byName.has(r) && r !== o.name)
    edges.set(o.name, out)
    for (const r of out) indegree.set(r, indegree.get(r)! + 1)
  }
  const waves: StoredObject[][] = []
  let wave = dead.filter((o) => indegree.get(o.name) === 0)
  while (wave.length > 0) {
    waves.push(wave)
    const next: StoredObject[] = []
    for (const o of wave) {
      for (const r of edges.get(o.name)!) {
        const d = indegree.get(r)! - 1
        indegree.set(r, d)
        if (d === 0) next.push(byName.get(r)!)
      }
    }
    wave = next
  }
  return waves
}
