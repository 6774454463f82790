import { toHex } from '../../castore/digest.js'
import { NotFoundError, StillAliveError, UnsupportedError } from '../../errors.js'
import { decodeDirectory } from '../../castore/proto.js'
import { decodePathInfo } from '../../store/proto.js'
import type { GcOptions, GcReport } from '../../store/capabilities.js'
import * as nixbase32 from '../../store/nixbase32.js'
import type { PathInfo } from '../../store/path-info.js'
import { absolute, hashPart } from '../../store/store-path.js'
import { secondsSince } from '../../util/elapsed.js'

/** What gc reads and deletes in a memory store (structural, so this file needs no import of index.ts). */
export interface MemoryObjects {
  storeDir: string
  blobs: { blobs: Map<string, Buffer>; writtenAt: Map<string, number> }
  directories: { dirs: Map<string, Uint8Array>; writtenAt: Map<string, number> }
  pathInfos: { infos: Map<string, Uint8Array>; delete(key: string): void }
}

/**
 * gc of a memory store. It has no GC roots, so there is no `prune` (with
 * no roots it would delete every path): it collects orphans, the blobs and
 * Directories no PathInfo reaches, as plain `gc` does on a local store,
 * and deletes named paths (`deletePaths`) as `delete --ignore-liveness`
 * does: refused (StillAliveError) while another path refers to one.
 * Objects written within `graceMs` are kept, as on a local store: they
 * may belong to an import still under way.
 *
 * Mark and sweep run with no await in between, so no write lands in the
 * middle: a write racing gc either finishes first (and is marked) or runs
 * after, and a PathInfo whose data went is refused by admission, never
 * stored incomplete. There are no write sessions here, so an import that
 * found an old orphan stored just before gc took it fails (MissingDataError)
 * rather than retrying.
 */
export async function collectMemoryGarbage(store: MemoryObjects, opts: GcOptions): Promise<GcReport> {
  const started = performance.now()
  if (opts.prune) throw new UnsupportedError('a memory store has no GC roots, so gc --prune would delete every path: delete paths by name instead')
  opts.signal?.throwIfAborted()
  const { blobs, directories, pathInfos } = store
  const infos = new Map<string, PathInfo>()
  for (const [key, bytes] of pathInfos.infos) infos.set(key, decodePathInfo(bytes))
  const doomed = opts.deletePaths ? doomedPaths(store, infos, opts.deletePaths) : new Set<string>()

  // Mark what the remaining PathInfos reach.
  const live = { dirs: new Set<string>(), blobs: new Set<string>() }
  const stack: Array<{ dir: boolean; hex: string }> = []
  const mark = () => {
    while (stack.length > 0) {
      const { dir, hex } = stack.pop()!
      if (!dir) live.blobs.add(hex)
      if (!dir || live.dirs.has(hex)) continue
      live.dirs.add(hex)
      const bytes = directories.dirs.get(hex)
      if (!bytes) continue
      const d = decodeDirectory(bytes)
      for (const c of d.directories) stack.push({ dir: true, hex: toHex(c.digest) })
      for (const f of d.files) stack.push({ dir: false, hex: toHex(f.digest) })
    }
  }
  for (const [key, info] of infos) {
    if (doomed.has(key) || info.node.kind === 'symlink') continue
    stack.push({ dir: info.node.kind === 'directory', hex: toHex(info.node.digest) })
  }
  mark()

  // Unreached but written within the grace period: kept, with what a young Directory names
  // (an import under way may have found its blobs stored and written only its Directories since).
  const now = Date.now()
  const report: GcReport = { dryRun: !!opts.dryRun, paths: [], blobs: 0, packs: 0, directories: 0, tempFiles: 0, bytes: 0, keptYoung: 0, seconds: 0, writersHeldOffSeconds: 0 }
  const young = (at: number | undefined) => at !== undefined && now - at < opts.graceMs
  const kinds = [
    { objects: directories.dirs, writtenAt: directories.writtenAt, live: live.dirs, dir: true, count: 'directories' as const },
    { objects: blobs.blobs, writtenAt: blobs.writtenAt, live: live.blobs, dir: false, count: 'blobs' as const },
  ]
  for (const k of kinds) {
    for (const hex of k.objects.keys()) {
      if (k.live.has(hex) || !young(k.writtenAt.get(hex))) continue
      report.keptYoung++
      stack.push({ dir: k.dir, hex })
    }
  }
  mark()

  // Sweep: PathInfos first, then Directories, then blobs (the order a local store deletes in).
  const dead = kinds.map((k) => [...k.objects.keys()].filter((hex) => !k.live.has(hex)))
  const total = doomed.size + dead.reduce((n, d) => n + d.length, 0)
  let done = 0
  for (const key of doomed) {
    report.paths.push(absoluteOf(infos.get(key)!, store.storeDir))
    report.bytes += pathInfos.infos.get(key)!.length
    if (!opts.dryRun) pathInfos.delete(key)
    opts.onProgress?.(++done, total)
  }
  kinds.forEach((k, i) => {
    for (const hex of dead[i]!) {
      report[k.count]++
      report.bytes += k.objects.get(hex)!.length
      if (!opts.dryRun) {
        k.objects.delete(hex)
        k.writtenAt.delete(hex)
      }
      opts.onProgress?.(++done, total)
    }
  })
  report.seconds = secondsSince(started)
  return report
}

const absoluteOf = (info: PathInfo, storeDir: string) => `${storeDir}/${Buffer.from(info.node.name).toString('utf8')}`

/** Hash parts of the paths to delete; all or nothing: NotFoundError or StillAliveError before anything goes. */
function doomedPaths(store: MemoryObjects, infos: Map<string, PathInfo>, paths: NonNullable<GcOptions['deletePaths']>): Set<string> {
  const doomed = new Set(paths.map(hashPart))
  for (const p of paths) {
    const key = hashPart(p)
    const shown = absolute(p, store.storeDir)
    const info = infos.get(key)
    if (!info || Buffer.from(info.node.name).toString('utf8') !== `${key}-${p.name}`) throw new NotFoundError(`cannot delete path '${shown}': it is not in the store`)
    for (const [other, by] of infos) {
      if (doomed.has(other) || !by.references.some((r) => nixbase32.encode(r) === key)) continue
      throw new StillAliveError(`cannot delete path '${shown}' since it is still alive: '${absoluteOf(by, store.storeDir)}' refers to it`)
    }
  }
  return doomed
}
