import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import fs from 'node:fs'
import { lostRaceWithGc, retryOnConflict } from '../ops/retry.js'
import { StoreCommand } from '../cli/store-command.js'
import { copyProgress } from '../cli/progress.js'
import { parseTrustedKeysFlag } from '../cli/trusted-keys.js'
import { interrupted } from '../util/interrupt.js'
import { UsageError } from '../errors.js'
import { openStore } from '../backends/open-store.js'
import { addRoot, rootKeeper } from '../ops/roots.js'
import type { Store } from '../store/store.js'
import { readAll } from '../castore/blob-service.js'
import { copyClosure, type CopyReport } from '../ops/copy.js'
import { importClosure, parseClosureListing } from '../ops/import-closure.js'
import { inWriteSession, validateRootName } from '../store/capabilities.js'

export default class Copy extends StoreCommand<typeof Copy> {
  static override summary = 'Copy store paths with their closures between stores.'
  static override description =
    'Only what the target lacks moves, down to single blobs and directories; references go first, so the target never ' +
    'holds a path whose data or references are missing. With --closure, the paths of a Nix closure listing ' +
    '(`nix path-info --json --recursive`, or an exportReferencesGraph file) are read from the filesystem instead.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> --to grpc+http://[::1]:8000 /nix/store/…-hello',
    '<%= config.bin %> <%= command.id %> --from grpc+unix:///run/tvix.sock --to ./backup /nix/store/…-hello',
    'nix path-info --json --recursive /nix/store/…-hello | <%= config.bin %> <%= command.id %> --closure - --to grpc+http://[::1]:8000',
  ]
  static override strict = false
  static override enableJsonFlag = true
  static override args = { path: Args.string({ ignoreStdin: true, description: 'store paths to copy (with their closures)' }) }
  static override flags = {
    from: Flags.string({ summary: 'Source store URL (default: --store, else the default store).' }),
    to: Flags.string({ summary: 'Target store URL.', required: true }),
    closure: Flags.string({ summary: 'Read a Nix closure listing from FILE or stdin ("-"), and import its paths from the filesystem.', helpValue: 'FILE|-' }),
    'nix-root': Flags.string({ summary: 'With --closure: the store paths live under DIR (a chroot store, like local?root=DIR).', helpValue: 'DIR' }),
    parallel: Flags.integer({ summary: 'Store paths transferred at once.', default: 4, min: 1, max: 64 }),
    root: Flags.string({ summary: 'Register a GC root NAME in the target for the copied path, in the same step (local targets; one STORE_PATH).', helpValue: 'NAME' }),
    'trusted-public-keys': Flags.string({
      summary: 'From a binary cache: admit paths signed by one of these keys (NAME:BASE64, space-separated); others need a content address.',
      helpValue: 'KEYS',
      env: 'TVIX_TRUSTED_PUBLIC_KEYS',
    }),
    'check-sigs': Flags.boolean({ summary: 'From a binary cache: refuse paths without a trusted signature (--no-check-sigs admits them; hashes are checked all the same).', default: true, allowNo: true }),
  }

  async run(): Promise<CopyReport> {
    const { argv } = await this.parse(Copy)
    const paths = argv as string[]
    const f = this.flags
    const to = await openStore({ url: f.to, storeDir: f['store-dir'], client: this.clientSecurity() })
    try {
      if (f.root !== undefined) {
        if (paths.length !== 1 || f.closure !== undefined) throw new UsageError('--root needs exactly one STORE_PATH')
        validateRootName(f.root)
        rootKeeper(to, this.caller('copy --root', f.to))
        // Copy and root in one write session on the target: gc cannot prune the path in between.
        return await retryOnConflict(() =>
          inWriteSession(to, async (to) => {
            const report = await this.copyPaths(to, paths)
            await addRoot(to, f.root!, paths[0]!)
            return report
          }),
          lostRaceWithGc,
        )
      }
      if (f.closure !== undefined) {
        if (paths.length > 0) throw new UsageError('give either --closure or store paths, not both')
        if (f.from !== undefined) throw new UsageError('--closure imports from the filesystem, not from --from: drop --from (and give --nix-root DIR for a chroot store)')
        const text = (f.closure === '-' ? await readAll(process.stdin) : fs.readFileSync(f.closure)).toString('utf8')
        const listing = parseClosureListing(text)
        const report = await retryOnConflict(() => importClosure(to, listing, { nixRoot: f['nix-root'] }))
        if (!this.jsonEnabled()) for (const p of report.copied) process.stdout.write(`${p}\n`)
        return report
      }
      return await retryOnConflict(() => this.copyPaths(to, paths), lostRaceWithGc)
    } finally {
      await to.close()
    }
  }

  private async copyPaths(to: Store, paths: string[]): Promise<CopyReport> {
    const f = this.flags
    if (paths.length === 0) throw new UsageError('nothing to copy: give store paths (or --closure FILE)')
    const from = f.from !== undefined ? await openStore({ url: f.from, storeDir: f['store-dir'], mustExist: true, client: this.clientSecurity() }) : await this.store()
    try {
      const progress = copyProgress()
      let report: CopyReport
      try {
        const trustedKeys = f['trusted-public-keys'] === undefined ? [] : parseTrustedKeysFlag(f['trusted-public-keys'])
        report = await copyClosure(from, to, paths, { parallel: f.parallel, onProgress: progress.update, trustedKeys, checkSigs: f['check-sigs'], signal: interrupted })
      } finally {
        progress.stop()
      }
      if (!this.jsonEnabled()) for (const p of report.copied) process.stdout.write(`${p}\n`)
      return report
    } finally {
      if (f.from !== undefined) await from.close()
    }
  }
}
