import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { printSweep, runSweep, sweepFlags, sweepOptions } from '../cli/gc-run.js'
import { StoreCommand } from '../cli/store-command.js'
import type { GcReport } from '../ops/gc.js'
import { UsageError } from '../errors.js'
import { parseStorePathArg } from '../store/store-path.js'

export default class Delete extends StoreCommand<typeof Delete> {
  static override summary = 'Delete store paths, as `nix store delete` does: refused while a GC root or another path needs them.'
  static override description =
    'Deletes the PathInfos of the paths, then the blobs and directories nothing else uses (as `gc` does, keeping anything ' +
    'written within --grace). All or nothing: if any path is still alive, nothing is deleted. Runs where the data lives (local, memory and S3 + PostgreSQL stores, not over gRPC). ' +
    'Same as `gc --delete`.'
  static override examples = ['<%= config.bin %> <%= command.id %> /nix/store/…-old-thing', '<%= config.bin %> <%= command.id %> --dry-run --json /nix/store/…-a /nix/store/…-b']
  static override strict = false
  static override enableJsonFlag = true
  static override args = { path: Args.string({ ignoreStdin: true, description: 'the store paths to delete' }) }
  static override flags = {
    'ignore-liveness': Flags.boolean({ summary: 'Delete even if a GC root keeps the paths (paths that refer to them still prevent it).' }),
    ...sweepFlags,
  }

  async run(): Promise<GcReport> {
    const { argv } = await this.parse(Delete)
    const f = this.flags
    if (argv.length === 0) throw new UsageError('give the store paths to delete')
    const deletePaths = (argv as string[]).map((a) => {
      const { path, sub } = parseStorePathArg(a, f['store-dir'])
      // Nix would delete the whole store path; naming a file inside it is more likely a mistake.
      if (sub.length > 0) throw new UsageError(`'${a}' is a path inside a store path; give the store path itself`)
      return path
    })
    const sweep = sweepOptions(f)
    const report = await runSweep(await this.store(), { ...sweep, deletePaths, ignoreRoots: f['ignore-liveness'] }, this.caller('delete'))
    if (!this.jsonEnabled()) printSweep(report, f.grace)
    return report
  }
}
