import fs from 'node:fs/promises'
import path from 'node:path'
import { NotFoundError, UsageError } from '../errors.js'
import { type IngestProgress, ingestPath } from '../store/ingest-fs.js'
import { absolute, validateStorePathName } from '../store/store-path.js'
import { fingerprintPath, TreeFingerprint } from '../store/tree-fingerprint.js'
import type { Store } from '../store/store.js'
import type { ImportCache, ImportKey } from './import-cache.js'
import { type Imported, registerSource, withStage } from './register.js'

/**
 * The store path name `nix-store --add ARG` uses: the last component of
 * ARG as written (trailing slashes dropped), while the content comes from
 * the lexically resolved absolute path.
 */
export function nameForPath(arg: string): string {
  const trimmed = arg.replace(/\/+$/, '')
  const name = trimmed.slice(trimmed.lastIndexOf('/') + 1)
  if (name === '') throw new UsageError(`cannot import ${JSON.stringify(arg)}: it has no name; give one with --name`)
  return name
}

/**
 * An entry must have been changed at least this long before an import
 * for its fingerprint to be recorded: a file changed again within the same
 * tick of a coarse clock (1-2 s on some filesystems) would look unchanged.
 */
const SETTLE_MS = 2000

export interface ImportPathOptions {
  name?: string
  onProgress?: IngestProgress
  /** Where a tree's fingerprint is kept, and the store's name in it: a tree unchanged since it was last imported is not read again. */
  cache?: { cache: ImportCache; scope: string }
  /** Read and hash the tree even if it looks unchanged (its fingerprint is still recorded). */
  rehash?: boolean
}

export async function importPath(store: Store, arg: string, opts: ImportPathOptions = {}): Promise<Imported> {
  const abs = path.resolve(arg)
  const name = validateStorePathName(opts.name ?? nameForPath(arg))
  try {
    await fs.lstat(abs)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new NotFoundError(`getting status of '${abs}': No such file or directory`)
    throw e
  }
  const started = Date.now()
  const key = opts.cache && { scope: opts.cache.scope, storeDir: store.storeDir, source: abs, name }
  if (key && !opts.rehash) {
    const unchanged = await importedBefore(store, opts.cache!.cache, key)
    if (unchanged) return unchanged
  }
  const fingerprint = key && new TreeFingerprint()
  const imported = await withStage(store, async (stage, store) => {
    const ingested = await ingestPath(abs, stage, opts.onProgress, { fingerprint })
    return registerSource(store, ingested, stage, name)
  })
  if (key && fingerprint!.settledBefore(started - SETTLE_MS)) opts.cache!.cache.record(key, fingerprint!.digest(), imported.storePath.slice(store.storeDir.length + 1))
  return imported
}

/** What an earlier import of the same tree gave, if the tree looks the same to lstat and the store still has that path. */
async function importedBefore(store: Store, cache: ImportCache, key: ImportKey): Promise<Imported | undefined> {
  const entry = cache.lookup(key)
  if (!entry) return undefined
  // The store first: one lookup, where a store made afresh (same folder, same URL) would cost a walk of the tree.
  const info = await store.pathInfos.get(entry.path.digest)
  if (!info?.narinfo || fingerprintPath(key.source).digest() !== entry.fingerprint) return undefined
  const { narSize, narSha256 } = info.narinfo
  return { storePath: absolute(entry.path, store.storeDir), narSize, narSha256, info }
}
