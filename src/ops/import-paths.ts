import fs from 'node:fs/promises'
import path from 'node:path'
import { NotFoundError, UsageError } from '../errors.js'
import { type IngestProgress, ingestPath } from '../store/ingest-fs.js'
import { validateStorePathName } from '../store/store-path.js'
import type { Store } from '../store/store.js'
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

export async function importPath(
  store: Store,
  arg: string,
  opts: { name?: string; onProgress?: IngestProgress } = {},
): Promise<Imported> {
  const abs = path.resolve(arg)
  const name = validateStorePathName(opts.name ?? nameForPath(arg))
  try {
    await fs.lstat(abs)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new NotFoundError(`getting status of '${abs}': No such file or directory`)
    throw e
  }
  return withStage(store, async (stage, store) => {
    const ingested = await ingestPath(abs, stage, opts.onProgress)
    return registerSource(store, ingested, stage, name)
  })
}
