import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import fs from 'node:fs'
import { lostRaceWithGc, retryOnConflict } from '../ops/retry.js'
import { importProgress } from '../cli/progress.js'
import { StoreCommand } from '../cli/store-command.js'
import { BackendError, NotFoundError, UsageError, systemMessage } from '../errors.js'
import { importNar } from '../ops/import-nar.js'
import { ImportCache } from '../ops/import-cache.js'
import { importPath } from '../ops/import-paths.js'
import type { Imported } from '../ops/register.js'
import { type PathInfoJson, pathInfoJson } from '../store/path-info-json.js'
import type { Store } from '../store/store.js'
import { addRoot, rootKeeper } from '../ops/roots.js'
import { inWriteSession, validateRootName } from '../store/capabilities.js'

export default class Import extends StoreCommand<typeof Import> {
  static override summary = 'Add files, directories or a NAR to the store, as `nix-store --add` does.'
  static override description =
    'Prints one store path per argument, identical to what `nix-store --add` prints. Symlinks are stored, never followed.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> ./src',
    '<%= config.bin %> <%= command.id %> --name hello ./hello.txt',
    'nix-store --dump /nix/store/…-foo | <%= config.bin %> <%= command.id %> --nar - --name foo',
  ]
  static override strict = false
  static override createsStore = true
  static override enableJsonFlag = true
  static override args = { path: Args.string({ ignoreStdin: true, description: 'file, directory or symlink to import' }) }
  static override flags = {
    name: Flags.string({ summary: 'Store path name (default: the last component of PATH).' }),
    nar: Flags.string({ summary: 'Import a NAR from FILE, or from stdin with "-".', helpValue: 'FILE|-' }),
    root: Flags.string({ summary: 'Register a GC root NAME for the imported path, in the same step (local stores).', helpValue: 'NAME' }),
    rehash: Flags.boolean({
      summary: 'Read and hash every file, even of a tree unchanged since you last imported it.',
      description:
        'A tree imported before is not read again while every entry looks the same to lstat (device, inode, mode, size, mtime, ctime) and the store still has its path: the fingerprint is kept in $XDG_CACHE_HOME/tvix-store/imports. Entries changed within 2 s before an import are not trusted to look different after a change.',
    }),
  }

  async run(): Promise<PathInfoJson[]> {
    const { argv } = await this.parse(Import)
    const paths = argv as string[]
    const { name, nar } = this.flags
    if (nar !== undefined && paths.length > 0) throw new UsageError('give either --nar or paths, not both')
    if (nar === undefined && paths.length === 0) throw new UsageError('nothing to import: give at least one PATH (or --nar FILE)')
    if (name !== undefined && paths.length > 1) throw new UsageError('--name needs exactly one PATH')
    if (this.flags.root !== undefined && paths.length > 1) throw new UsageError('--root needs exactly one PATH')
    const store = await this.store()
    const { root } = this.flags
    // Checked before importing anything: a root needs a store with GC roots and a valid name.
    if (root !== undefined) {
      rootKeeper(store, this.caller('import --root'))
      validateRootName(root)
    }
    // The root goes in within the import's write session: gc cannot prune the path in between.
    const once = () =>
      inWriteSession(store, async (store) => {
        const results = await this.importAll(store, paths)
        if (root !== undefined) await addRoot(store, root, results[0]!.path)
        return results
      })
    // Files can be read again if a concurrent gc invalidated the import (or,
    // through a daemon, took what it sent before the PathInfo); a stream (--nar) cannot.
    return nar === undefined ? retryOnConflict(once, lostRaceWithGc) : once()
  }

  /** Store paths already printed: a run repeated after a conflict with gc prints each once. */
  private readonly printed = new Set<string>()

  private async importAll(store: Store, paths: string[]): Promise<PathInfoJson[]> {
    const { name, nar } = this.flags
    const results: PathInfoJson[] = []
    // Store paths are printed through the bar (none for --nar): it clears itself first, so a path never shares its line.
    const progress = importProgress(nar === undefined ? paths : [])
    const done = (r: Imported) => {
      results.push(pathInfoJson(r.info, store.storeDir))
      if (!this.jsonEnabled() && !this.printed.has(r.storePath)) progress.print(r.storePath + '\n')
      this.printed.add(r.storePath)
    }
    if (nar !== undefined) {
      const narName = name ?? (nar === '-' ? undefined : nar.replace(/^.*\//, '').replace(/\.nar$/, ''))
      if (!narName) throw new UsageError('--nar - needs --name')
      const src = nar === '-' ? process.stdin : fs.createReadStream(nar, { fd: openNar(nar), highWaterMark: 1 << 20 })
      done(await importNar(store, src, narName))
      return results
    }
    try {
      const cache = { cache: ImportCache.forUser(), scope: this.storeScope() }
      for (const p of paths) done(await importPath(store, p, { name, cache, rehash: this.flags.rehash, onProgress: (b, f) => progress.update(b, f) }))
    } finally {
      progress.stop()
    }
    return results
  }
}

/** Opens `--nar FILE` up front: a missing file or a directory is one clear line, not a raw errno message. */
function openNar(file: string): number {
  let fd: number
  try {
    fd = fs.openSync(file, 'r')
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    if (err.code === 'ENOENT') throw new NotFoundError(`cannot read ${file}: no such file or directory`)
    throw new BackendError(`cannot read ${file}: ${systemMessage(err)}`, { cause: e })
  }
  if (fs.fstatSync(fd).isDirectory()) {
    fs.closeSync(fd)
    throw new UsageError(`cannot read ${file}: it is a directory, not a NAR`)
  }
  return fd
}
