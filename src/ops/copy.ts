import { type BlobStage, stageOrWriteThrough } from '../castore/blob-service.js'
import { type B3Digest, b3Display, bytesEqual, toHex } from '../castore/digest.js'
import { type Directory, directoryDigest } from '../castore/directory.js'
import type { Node } from '../castore/node.js'
import { IntegrityError, InvalidInputError, NotFoundError } from '../errors.js'
import * as nixbase32 from '../store/nixbase32.js'
import { type PathInfo, storePathOf } from '../store/path-info.js'
import { absolute } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { forEachLimit } from '../util/pool.js'
import { closureOf } from './closure.js'
import { inWriteSession } from '../store/capabilities.js'
import { publishPathInfo } from './publish.js'

/** What `copy --json` prints, with or without --closure. */
export interface CopyReport {
  /** Every path of the closure, sorted. */
  paths: string[]
  copied: string[]
  skipped: string[]
  blobs: { copied: number; skipped: number }
  directories: { copied: number; skipped: number }
  /** File data that moved: the blob bytes fetched from the source (or read from disk by --closure). */
  bytes: number
}

/** An empty report for a copy of `paths` (`copy` and `copy --closure` report the same shape). */
export function newCopyReport(paths: string[]): CopyReport {
  return { paths: [...paths].sort(), copied: [], skipped: [], blobs: { copied: 0, skipped: 0 }, directories: { copied: 0, skipped: 0 }, bytes: 0 }
}

export interface CopyOptions {
  /** Store paths transferred at once. */
  parallel?: number
  onProgress?: (p: { pathsDone: number; pathsTotal: number; bytes: number }) => void
}

/** Lookups in flight when asking a store which paths it has: pipelined, not one round trip each. */
const LOOKUPS_IN_FLIGHT = 64
/** Blob transfers at once: each waits on a round trip (and on the target's fsync). */
const BLOBS_IN_FLIGHT = 32

/**
 * Copies store paths and their closures from one store to another. The
 * target is asked which paths it has (pipelined lookups), and for each
 * missing path which blobs and Directories it has, so only what is
 * missing moves. Paths go references first, and within a path blobs, then
 * Directories, then the PathInfo: the target never holds a PathInfo whose
 * data or references are missing.
 */
export function copyClosure(from: Store, to: Store, args: string[], opts: CopyOptions = {}): Promise<CopyReport> {
  // One write session on the target: paths found there stay until the paths that refer to them are registered.
  return inWriteSession(to, () => copyInSession(from, to, args, opts))
}

async function copyInSession(from: Store, to: Store, args: string[], opts: CopyOptions): Promise<CopyReport> {
  const closure = await closureOf(from, args)
  const report = newCopyReport([...closure.values()].map((i) => absolute(storePathOf(i), from.storeDir)))
  const present = new Set<string>()
  await forEachLimit(closure.entries(), LOOKUPS_IN_FLIGHT, async ([hash, info]) => {
    const there = await to.pathInfos.get(storePathOf(info).digest)
    if (there && bytesEqual(there.node.name, info.node.name)) present.add(hash)
  })

  const blobs = new BlobCopier(from, to, report)
  const done = new Map<string, Promise<void>>()
  let pathsDone = present.size
  const progress = () => opts.onProgress?.({ pathsDone, pathsTotal: closure.size, bytes: report.bytes })
  let slots = Math.max(1, opts.parallel ?? 4)
  const waiting: Array<() => void> = []
  const acquire = async () => {
    while (slots === 0) await new Promise<void>((r) => waiting.push(r))
    slots--
  }
  const release = () => {
    slots++
    waiting.shift()?.()
  }

  const copyPath = (hash: string): Promise<void> => {
    let p = done.get(hash)
    if (p) return p
    p = (async () => {
      const info = closure.get(hash)!
      // References first (a self-reference is not a dependency).
      await Promise.all(
        info.references.map((r) => nixbase32.encode(r)).filter((h) => h !== hash && !present.has(h)).map(copyPath),
      )
      await acquire()
      try {
        await copyTree(info.node, from, to, blobs, report)
        await publishPathInfo(to, info)
      } finally {
        release()
      }
      report.copied.push(absolute(storePathOf(info), to.storeDir))
      pathsDone++
      progress()
    })()
    done.set(hash, p)
    return p
  }

  progress()
  const missing = [...closure.keys()].filter((h) => !present.has(h))
  const results = await Promise.allSettled(missing.map(copyPath))
  const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined
  if (failed) throw failed.reason
  for (const h of present) report.skipped.push(absolute(storePathOf(closure.get(h)!), to.storeDir))
  report.copied.sort()
  report.skipped.sort()
  return report
}

/** Copies the castore data under `node` that the target lacks: blobs, then Directories. */
async function copyTree(node: Node, from: Store, to: Store, blobs: BlobCopier, report: CopyReport): Promise<void> {
  if (node.kind === 'symlink') return
  if (node.kind === 'file') {
    await blobs.copyAll([node.digest])
    return
  }
  const dirs = new Map<string, Directory>()
  for await (const d of from.directories.getClosure(node.digest)) dirs.set(toHex(directoryDigest(d)), d)
  if (dirs.size === 0) throw new NotFoundError(`directory ${b3Display(node.digest)} is missing from the source store`)
  const files = new Map<string, B3Digest>()
  for (const d of dirs.values()) for (const f of d.files) files.set(toHex(f.digest), f.digest)
  await blobs.copyAll(files.values())
  // Only the Directories the target lacks travel (it accepts children it already has);
  // a peer that insists on whole closures in one stream gets the whole closure.
  const order = leavesFirst(node.digest, dirs)
  const lacking: Directory[] = []
  await forEachLimit(order, LOOKUPS_IN_FLIGHT, async (d) => {
    if (!(await to.directories.get(directoryDigest(d)))) lacking.push(d)
  })
  report.directories.skipped += order.length - lacking.length
  if (lacking.length === 0) return
  const missing = new Set(lacking)
  const partial = order.filter((d) => missing.has(d))
  try {
    await to.directories.putClosure(partial)
    report.directories.copied += partial.length
  } catch (e) {
    if (!(e instanceof InvalidInputError) || partial.length === order.length) throw e
    await to.directories.putClosure(order)
    report.directories.copied += order.length
    report.directories.skipped -= order.length - partial.length
  }
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

/** Blob transfers shared by all paths of one copy, so a blob shared by two paths moves once. */
class BlobCopier {
  /** Per blob: settles once the blob is visible in the target (its stage committed). */
  private readonly visible = new Map<string, Promise<void>>()

  constructor(
    private readonly from: Store,
    private readonly to: Store,
    private readonly report: CopyReport,
  ) {}

  /** Copies the blobs the target lacks through one stage, made durable together. */
  async copyAll(digests: Iterable<B3Digest>): Promise<void> {
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
      await forEachLimit(mine, BLOBS_IN_FLIGHT, (d) => this.copy(d, stage))
      await stage.commit()
    } catch (e) {
      await stage.abort()
      for (const s of ours) s.reject(e)
      throw e
    }
    for (const s of ours) s.resolve()
    // Blobs another path is moving must be visible before our Directories refer to them.
    await Promise.all(others)
  }

  private async copy(d: B3Digest, stage: BlobStage): Promise<void> {
    if (await this.to.blobs.has(d)) {
      this.report.blobs.skipped++
      return
    }
    const src = await this.source(d)
    const info = await stage.put(src)
    if (!bytesEqual(info.digest, d)) throw new IntegrityError(`blob ${b3Display(d)} arrived as ${b3Display(info.digest)}`)
    this.report.blobs.copied++
  }

  /**
   * The blob's bytes. From a remote source, a chunked blob is assembled
   * from the chunks the target already has (read locally) and only the
   * missing ones fetched; `bytes` counts what was fetched.
   */
  private async source(d: B3Digest): Promise<AsyncIterable<Uint8Array>> {
    const report = this.report
    const chunks = this.from.blobs.remote && !this.to.blobs.remote ? await this.from.blobs.chunks?.(d) : undefined
    if (chunks && chunks.length > 1) {
      const { from, to } = this
      return (async function* () {
        for (const c of chunks) {
          const local = await to.blobs.open(c.digest)
          const data = local ?? (await from.blobs.open(c.digest))
          if (!data) throw new NotFoundError(`chunk ${b3Display(c.digest)} of blob ${b3Display(d)} is missing from the source store`)
          for await (const piece of data) {
            if (!local) report.bytes += piece.length
            yield piece
          }
        }
      })()
    }
    const src = await this.from.blobs.open(d)
    if (!src) throw new NotFoundError(`blob ${b3Display(d)} is missing from the source store`)
    return (async function* () {
      for await (const piece of src) {
        report.bytes += piece.length
        yield piece
      }
    })()
  }
}
