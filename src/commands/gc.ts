import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { DEFAULT_GRACE, DEFAULT_MAX_WAIT, parseDuration } from '../cli/duration.js'
import { countProgress } from '../cli/progress.js'
import { plural } from '../cli/output.js'
import { StoreCommand } from '../cli/store-command.js'
import { collectGarbage, type GcReport } from '../backends/local/gc.js'
import { UsageError } from '../errors.js'
import { parseStorePathArg } from '../store/store-path.js'

export default class Gc extends StoreCommand<typeof Gc> {
  static override summary = 'Delete what nothing needs: orphaned blobs and directories, and with --prune unrooted paths.'
  static override description =
    'By default only castore objects that no PathInfo reaches go (leftovers of interrupted or failed imports); no path is ' +
    'deleted. --prune also deletes the paths outside the closure of every GC root (see `roots`), as `nix-store --gc` does. ' +
    'Anything written within --grace is kept, as it may belong to an upload still under way. Safe while imports and ' +
    'copies run: they wait while gc sweeps, and gc waits for those already running. Runs on local stores only.'
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
    grace: Flags.string({ summary: 'Keep anything written less than DURATION ago.', default: DEFAULT_GRACE, helpValue: 'DURATION' }),
    'dry-run': Flags.boolean({ summary: 'Print what would be deleted; delete nothing.' }),
    'max-wait': Flags.string({
      summary: 'Give up, deleting nothing, if writers stay inside a commit longer than DURATION (a stopped or hung process).',
      default: DEFAULT_MAX_WAIT,
      helpValue: 'DURATION',
    }),
  }

  async run(): Promise<GcReport> {
    const { argv } = await this.parse(Gc)
    const paths = argv as string[]
    const f = this.flags
    if (f.delete && paths.length === 0) throw new UsageError('--delete needs the store paths to delete')
    if (!f.delete && paths.length > 0) throw new UsageError('store paths are only taken with --delete')
    if (f.delete && f.prune) throw new UsageError('give either --prune or --delete, not both')
    if (f['older-than'] !== undefined && !f.prune) throw new UsageError('--older-than needs --prune')
    const graceMs = parseDuration(f.grace, 'grace')
    const olderThanMs = f['older-than'] === undefined ? undefined : parseDuration(f['older-than'], 'older-than')
    const deletePaths = f.delete ? paths.map((p) => parseStorePathArg(p, f['store-dir']).path) : undefined
    const store = await this.localStore('gc')
    const progress = countProgress('deleting')
    let report: GcReport
    try {
      report = await collectGarbage(store, {
        prune: f.prune,
        olderThanMs,
        deletePaths,
        graceMs,
        dryRun: f['dry-run'],
        maxWaitMs: parseDuration(f['max-wait'], 'max-wait'),
        onProgress: progress.update,
        onWait: (w) => process.stderr.write(`waiting for ${w.length} writer${w.length === 1 ? '' : 's'} to finish a commit (pid ${w.map((x) => x.pid).join(', ')})\n`),
      })
    } finally {
      progress.stop()
    }
    if (!this.jsonEnabled()) {
      for (const p of report.paths.sort()) process.stdout.write(`${p}\n`)
      process.stderr.write(summary(report, f.grace) + '\n')
    }
    return report
  }
}

function summary(r: GcReport, grace: string): string {
  const n = plural
  const verb = r.dryRun ? 'would be deleted' : 'deleted'
  const objects = r.blobs + r.packs + r.directories
  let line =
    `${n(r.paths.length, 'store path')} ${verb}, ${n(objects, 'object')} (${n(r.blobs, 'blob')}, ${n(r.packs, 'pack')}, ${r.directories} director${r.directories === 1 ? 'y' : 'ies'})` +
    (r.tempFiles > 0 ? ` and ${n(r.tempFiles, 'leftover temp file')}` : '') +
    `, ${(r.bytes / 1048576).toFixed(2)} MiB ${r.dryRun ? 'to free' : 'freed'}, in ${r.seconds.toFixed(2)} s`
  if (r.keptYoung > 0) line += `; kept ${n(r.keptYoung, 'unreachable object')} written within --grace ${grace}`
  return line
}
