import { flush } from '@oclif/core/flush'
import { run } from '@oclif/core/run'
import { settings } from '@oclif/core/settings'
import { UsageError } from '../errors.js'
import { type Failure, reportError, wantsJson } from './report.js'

/**
 * Runs the CLI (bin/run.js, bin/dev.js). Commands report their own
 * failures (StoreCommand.catch); what fails before a command runs, an
 * unknown command or `help` of one, would get oclif's multi-line banner,
 * so it becomes the same one `error:` line (JSON under --json), exit 2.
 */
export async function main(argv: string[], dir: string, opts: { development?: boolean } = {}): Promise<void> {
  if (opts.development) {
    // As oclif's execute() does for bin/dev.js: commands load from src/ through tsx.
    process.env.NODE_ENV = 'development'
    settings.debug = true
  }
  try {
    await run(helpAsFlag(argv), dir)
    await flush()
  } catch (e) {
    const err = e as Failure
    if (err.oclif?.exit === 0) return
    process.exitCode = reportError(await explainUnknownCommand(err, dir), wantsJson(argv))
  }
}

/** `help [COMMAND...]` is `COMMAND... --help`: oclif's core has no help command of its own. */
function helpAsFlag(argv: string[]): string[] {
  return argv[0] === 'help' ? [...argv.slice(1), '--help'] : argv
}

/** oclif's `command lss not found` (or `Command lss not found.` from help) in our words, with the nearest command. */
async function explainUnknownCommand(err: Failure, dir: string): Promise<Failure> {
  const m = /^command (\S+) not found\.?$/i.exec(err.message ?? '')
  if (!m) return err
  const { Config } = await import('@oclif/core/config')
  const config = await Config.load(dir)
  // oclif joins every word into the id (`improt x` -> `improt:x`): the unknown command is the first word after any topics.
  const words = m[1]!.split(':')
  let k = 1
  while (k < words.length && config.findTopic(words.slice(0, k).join(':'))) k++
  const asTyped = words.slice(0, k).join(' ')
  const ids = config.commandIDs.map((id) => id.replaceAll(':', ' '))
  const near = nearest(asTyped, ids)
  return new UsageError(`unknown command '${asTyped}'${near ? ` (did you mean '${near}'?)` : ''}; see '${config.bin} --help'`)
}

/** The candidate within two edits of `word` (the closest), if any. */
export function nearest(word: string, candidates: string[]): string | undefined {
  let best: { c: string; d: number } | undefined
  for (const c of candidates) {
    const d = editDistance(word, c)
    if (d <= 2 && (!best || d < best.d)) best = { c, d }
  }
  return best?.c
}

/** Levenshtein distance, one row at a time. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)))
    prev = row
  }
  return prev[b.length]!
}
