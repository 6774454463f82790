import * as Flags from '@oclif/core/flags'
import { collectGarbage, type GcOptions, type GcReport } from '../ops/gc.js'
import type { Caller } from '../ops/require-capability.js'
import type { Store } from '../store/store.js'
import { DEFAULT_GRACE, DEFAULT_MAX_WAIT, parseDuration } from './duration.js'
import { plural } from './output.js'
import { countProgress } from './progress.js'

/** The flags of every command that sweeps (gc, delete). */
export const sweepFlags = {
  grace: Flags.string({ summary: 'Keep anything written less than DURATION ago.', default: DEFAULT_GRACE, helpValue: 'DURATION' }),
  'dry-run': Flags.boolean({ summary: 'Print what would be deleted; delete nothing.' }),
  'max-wait': Flags.string({
    summary: 'Give up, deleting nothing, if writers stay inside a commit longer than DURATION (a stopped or hung process).',
    default: DEFAULT_MAX_WAIT,
    helpValue: 'DURATION',
  }),
}

export type SweepOptions = Pick<GcOptions, 'graceMs' | 'maxWaitMs' | 'dryRun'>

/** The sweep flags, checked before the store is opened. */
export function sweepOptions(f: { grace: string; 'dry-run': boolean; 'max-wait': string }): SweepOptions {
  return { graceMs: parseDuration(f.grace, 'grace'), maxWaitMs: parseDuration(f['max-wait'], 'max-wait'), dryRun: f['dry-run'] }
}

/** Runs collectGarbage with a progress bar and a line for each wait on writers. */
export async function runSweep(store: Store, opts: SweepOptions & Pick<GcOptions, 'prune' | 'olderThanMs' | 'deletePaths' | 'ignoreRoots'>, caller: Caller): Promise<GcReport> {
  const progress = countProgress('deleting')
  try {
    return await collectGarbage(
      store,
      {
        ...opts,
        onProgress: progress.update,
        onWait: (w) =>
          progress.print(
            // A shared store cannot name its writers (they may be on other machines).
            w.length === 0 ? 'waiting for commits (or another gc) to end\n' : `waiting for ${w.length} writer${w.length === 1 ? '' : 's'} to finish a commit (pid ${w.map((x) => x.pid).join(', ')})\n`,
            process.stderr,
          ),
      },
      caller,
    )
  } finally {
    progress.stop()
  }
}

/** The deleted paths on stdout, one a line, and the summary on stderr. */
export function printSweep(r: GcReport, grace: string): void {
  for (const p of [...r.paths].sort()) process.stdout.write(`${p}\n`)
  process.stderr.write(summary(r, grace) + '\n')
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
