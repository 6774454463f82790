import type { TreeObserver, TreeStage } from '../castore/tree-stage.js'
import { InvalidInputError } from '../errors.js'
import type { CallOptions } from '../util/call-options.js'
import type { IngestResult } from './ingest-fs.js'
import type { NarInfoFields } from './narinfo.js'
import type { PathInfo } from './path-info.js'
import type { PathInfoService, SignatureAdding } from './path-info-service.js'
import type { StorePath } from './store-path.js'
import type { Store, TempRoots } from './store.js'

/*
 * What only some stores can do, as optional interfaces with type guards:
 * callers ask the store, never its class, so a combinator (a cache in
 * front of a far store) can offer what its parts offer.
 */

/** A store whose gc must not sweep what a write in progress found stored. */
export interface WriteSessions {
  /**
   * Runs `fn` as one write session: gc waits for open sessions and holds
   * new ones off while it sweeps, so what a session found stored stays
   * stored until it has registered what relies on it. `fn` gets the store
   * as the session sees it, and must read and write through that view:
   * the session is carried by it, not by some ambient context. A session
   * started on a view joins the view's own.
   */
  writeSession<T>(fn: (store: Store) => Promise<T>): Promise<T>
}

export function hasWriteSessions(store: Store): store is Store & WriteSessions {
  return typeof (store as Partial<WriteSessions>).writeSession === 'function'
}

/**
 * Runs `fn` in a write session where the store has them (handing it the
 * session's view of `store`, which offers what `store` offers), else just
 * runs it on `store` (nothing to exclude).
 */
export function inWriteSession<S extends Store, T>(store: S, fn: (store: S) => Promise<T>): Promise<T> {
  return hasWriteSessions(store) ? store.writeSession(fn as (store: Store) => Promise<T>) : fn(store)
}

/** A store that keeps what one daemon client was told is stored from gc, per client. */
export interface TempRootsCapable {
  tempRoots(): TempRoots
}

export function hasTempRoots(store: Store): store is Store & TempRootsCapable {
  return typeof (store as Partial<TempRootsCapable>).tempRoots === 'function'
}

/**
 * A store that starts, before a server takes its first request, what its
 * writes will need (the local store: the helper its big commits sync
 * through, started while the daemon is small and serves no one).
 */
export interface ServingPreparable {
  prepareToServe(): void
}

export function prepareToServe(store: Store): void {
  ;(store as Partial<ServingPreparable>).prepareToServe?.()
}

/** A process inside a commit that a sweep waits for. */
export interface Writer {
  pid: number
}

export interface GcOptions {
  /** Also delete PathInfos outside the closure of every GC root. */
  prune?: boolean
  /** With prune: only PathInfos registered more than this long ago go. */
  olderThanMs?: number
  /** Delete these paths (refused if anything live needs them), then their data. */
  deletePaths?: StorePath[]
  /** With deletePaths: GC roots do not keep them (paths that refer to them still do), as Nix's --ignore-liveness. */
  ignoreRoots?: boolean
  /** Anything written less than this long ago is kept: it may belong to an upload still in progress. */
  graceMs: number
  dryRun?: boolean
  onWait?: (writers: Writer[]) => void
  /** Give up (TimeoutError) if commits hold the sweep off longer than this. */
  maxWaitMs?: number
  /** Aborts a gc still waiting for commits (a daemon shutting down). */
  signal?: AbortSignal
  onProgress?: (done: number, total: number) => void
}

export interface GcReport {
  dryRun: boolean
  /** Store paths whose PathInfo was deleted (absolute). */
  paths: string[]
  blobs: number
  packs: number
  directories: number
  /** Leftovers of killed writers: temp files and lock tokens. */
  tempFiles: number
  bytes: number
  /** Unreachable objects kept because they are younger than the grace period. */
  keptYoung: number
  seconds: number
  /** How long writers were held off (the second mark and the sweep). */
  writersHeldOffSeconds: number
}

/** A store that can delete what nothing needs: castore objects no PathInfo reaches, unrooted or named paths. */
export interface GarbageCollecting {
  collectGarbage(opts: GcOptions): Promise<GcReport>
}

/** Whether `store` has a method `name`: how a guard below recognises a capability. */
function offers<C>(store: Store, name: keyof C): boolean {
  return typeof (store as unknown as Record<keyof C, unknown>)[name] === 'function'
}

export function hasGarbageCollecting(store: Store): store is Store & GarbageCollecting {
  return offers<GarbageCollecting>(store, 'collectGarbage')
}

export interface VerifyOptions {
  /** Only these paths and the objects their trees use; all of the store when undefined. */
  paths?: StorePath[]
  /** Re-render each NAR and compare it with the recorded NarHash and NarSize. */
  narHash?: boolean
  /** With narHash: paths whose NAR is larger are skipped (listed in `skipped`), not rendered. DEFAULT_MAX_NAR_SIZE when unset. */
  maxNarSize?: number
  /** Remove corrupt objects, what can no longer be read because of them, and the paths that can no longer be served. */
  repair?: boolean
  onProgress?: (done: number, total: number) => void
}

export interface Problem {
  /** What is wrong, on one line. */
  message: string
}

export interface VerifyReport {
  checked: { blobs: number; packs: number; directories: number; paths: number }
  problems: Problem[]
  /** With repair: what was removed, one line each. */
  removed: string[]
  /** With repair: what was written back (referrers index entries, a local store's catalogs), one line each. */
  added: string[]
  /** With narHash: paths whose NAR hash was not checked, and why, one line each. */
  skipped: string[]
  seconds: number
}

/** A store that can check its own objects (re-hash what it holds) and repair itself. */
export interface Verifying {
  verify(opts: VerifyOptions): Promise<VerifyReport>
}

export function hasVerifying(store: Store): store is Store & Verifying {
  return offers<Verifying>(store, 'verify')
}

export interface GcRoot {
  name: string
  /** The store path it keeps alive; undefined if the root does not hold one. */
  path?: StorePath
}

/** Named GC roots: each keeps a store path and its closure from `gc --prune`. */
export interface GcRootSet {
  /** Points `name` at `path` (repointing an existing root), within the caller's write session. */
  add(name: string, path: StorePath): Promise<void>
  /** NotFoundError if there is no such root. */
  remove(name: string): Promise<void>
  list(): GcRoot[] | Promise<GcRoot[]>
  /** Where the root is kept, as Nix prints a root's link (`nix-store -q --roots`). */
  link(name: string): string
}

export interface GcRootsCapable {
  readonly roots: GcRootSet
}

export function hasGcRoots(store: Store): store is Store & GcRootsCapable {
  return typeof (store as Partial<GcRootsCapable>).roots?.list === 'function'
}

/** Root names: what a store path name allows, without a leading dot (no hidden files, no `.`/`..`). */
export const ROOT_NAME = /^[A-Za-z0-9+\-_?=][A-Za-z0-9+\-._?=]{0,210}$/

export function validateRootName(name: string): string {
  if (!ROOT_NAME.test(name)) {
    throw new InvalidInputError(`invalid GC root name ${JSON.stringify(name)}: use 1-211 of A-Z a-z 0-9 + - . _ ? =, not starting with "."`)
  }
  return name
}

/** A store whose PathInfos can gain signatures (PathInfoService.addSignatures). */
export function canAddSignatures(store: Store): store is Store & { pathInfos: PathInfoService & SignatureAdding } {
  return typeof (store.pathInfos as Partial<SignatureAdding>).addSignatures === 'function'
}

export interface NarSinkOptions extends CallOptions {
  /** Bytes of the compressed NAR file produced so far, per piece. */
  onBytes?: (n: number) => void
  /** The path's NAR listing (`<hash>.ls`), for caches that keep one (`?write-nar-listing=true`). */
  listing?: () => AsyncIterable<string>
}

/** What one path's upload wrote into a binary cache. */
export interface NarSinkPut {
  /** The narinfo's `URL:` (`nar/<file hash>.nar.xz`). */
  url: string
  /** Size of the (compressed) NAR file. */
  fileSize: number
  /** Bytes actually written or sent: 0 when the cache had the NAR file already. */
  written: number
}

/**
 * A Nix binary cache as a target: it takes whole paths as NARs (narinfo +
 * compressed NAR file), not castore objects, so copy streams each path's
 * NAR into it instead of moving blobs and Directories.
 */
export interface NarSink {
  /** Whether the cache has this path's narinfo (by the store path's digest). */
  has(storePathDigest: Uint8Array, o?: CallOptions): Promise<boolean>
  /**
   * Writes the NAR `nar()` streams (it must match `info`'s NarHash and
   * NarSize), then the narinfo, last: a reader never sees a narinfo whose
   * NAR is missing.
   */
  putPath(info: PathInfo, nar: () => AsyncIterable<Uint8Array>, o?: NarSinkOptions): Promise<NarSinkPut>
}

export interface NarSinkCapable {
  readonly narSink: NarSink
}

export function hasNarSink(store: Store): store is Store & NarSinkCapable {
  return typeof (store as Partial<NarSinkCapable>).narSink?.putPath === 'function'
}

/** What fetchInto reports as a NAR arrives. */
export interface NarFetchOptions extends CallOptions {
  /** Told of every file and Directory the ingest stages. */
  observe?: TreeObserver
  /** Bytes of the file (as sent, compressed) received so far, per piece; a retried download counts again. */
  onBytes?: (n: number) => void
}

/**
 * A store whose paths come as NARs described by narinfos (a Nix binary
 * cache): a path's metadata is read without its data, so a copy can work
 * out a closure, check signatures and skip what the target has before any
 * NAR moves, then stream each NAR straight into the target's castore.
 */
export interface NarSource {
  /** How messages name the source (its URL, without parameters). */
  readonly sourceLabel: string
  /** The narinfo of the path with this store path digest, undefined if the source does not have it. */
  narInfo(storePathDigest: Uint8Array, opts?: CallOptions): Promise<NarInfoFields | undefined>
  /**
   * Fetches the NAR `fields` names and ingests it into `stage`: FileHash
   * and FileSize (where given) checked on the bytes as sent, NarHash and
   * NarSize on the NAR. Returns the tree (its blobs and Directories
   * staged) and the PathInfo the narinfo describes around it; nothing is
   * committed. A mismatch is an IntegrityError naming the path.
   */
  fetchInto(fields: NarInfoFields, stage: TreeStage, opts?: NarFetchOptions): Promise<{ info: PathInfo; ingested: IngestResult }>
}

export function isNarSource(store: Store): store is Store & NarSource {
  return offers<NarSource>(store, 'narInfo') && offers<NarSource>(store, 'fetchInto')
}
