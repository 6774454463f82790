import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { parseDuration } from '../cli/duration.js'
import { printSweep, runSweep, sweepFlags, sweepOptions } from '../cli/gc-run.js'
import { StoreCommand } from '../cli/store-command.js'
import type { GcReport } from '../ops/gc.js'
import { UsageError } from '../errors.js'
import { parseStorePathArg } from '../store/store-path.js'

export default class Gc extends StoreCommand<typeof Gc> {
  static override summary = 'Delete what nothing needs: orphaned blobs and directories, and with --prune unrooted paths.'
  static override description =
    'By default only castore objects that no PathInfo reaches go (leftovers of interrupted or failed imports); no path is ' +
    'deleted. --prune also deletes the paths outside the closure of every GC root (see `roots`), as `nix-store --gc` does. ' +
    'Anything written within --grace is kept, as it may belong to an upload still under way. Safe while imports and ' +
    'copies run: they wait while gc sweeps, and gc waits for those already running. Runs where the data lives: on local, memory (no GC roots, so no --prune) and S3 + PostgreSQL stores, not over gRPC.'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --prune --older-than 30d',
    '<%= config.bin %> <%= command.id %> --delete /nix/store/…-old-thing',
    '<%= config.bin %> <%= command.id %> --prune --dry-run',
  ]
  static override strict = false
  static override enableJsonFlag = true
  static override args = { path: Args.string({ ignoreStdin: true, description: 'with --delete: the store paths to delete' }) }
  static override flags = {
    prune: Flags.boolean({ summary: 'Also delete paths outside the closure of every GC root.' }),
    'older-than': Flags.string({ summary: 'With --prune: only delete paths registered longer ago than DURATION (e.g. 30d).', helpValue: 'DURATION' }),
    delete: Flags.boolean({ summary: 'Delete the given store paths (refused if a root or another path still needs them), then their data.' }),
    ...sweepFlags,
  }

  async run(): Promise<GcReport> {
    const { argv } = await this.parse(Gc)
    const paths = argv as string[]
    const f = this.flags
    if (f.delete && paths.length === 0) throw new UsageError('--delete needs the store paths to delete')
    if (!f.delete && paths.length > 0) throw new UsageError('store paths are only taken with --delete')
    if (f.delete && f.prune) throw new UsageError('give either --prune or --delete, not both')
    if (f['older-than'] !== undefined && !f.prune) throw new UsageError('--older-than needs --prune')
    const sweep = sweepOptions(f)
    const olderThanMs = f['older-than'] === undefined ? undefined : parseDuration(f['older-than'], 'older-than')
    const deletePaths = f.delete ? paths.map((p) => parseStorePathArg(p, f['store-dir']).path) : undefined
    const report = await runSweep(await this.store(), { ...sweep, prune: f.prune, olderThanMs, deletePaths }, this.caller('gc'))
    if (!this.jsonEnabled()) printSweep(report, f.grace)
    return report
  }
}
