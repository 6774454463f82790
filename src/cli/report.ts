import { StoreError } from '../errors.js'
import { colourFor } from './output.js'

/** Our errors, oclif's (parse errors carry `oclif.exit`), or anything else thrown. */
export type Failure = Error & { exitCode?: number; oclif?: { exit?: number } }

/**
 * Prints a failure as one line on stderr, `error: …` (or under --json one
 * JSON object, `{"error":{"code","message"}}`), and returns the exit code
 * it calls for: the error's own, 2 for oclif's usage errors, else 1.
 * A stack trace follows only with DEBUG.
 */
export function reportError(err: Failure, json: boolean): number {
  const exit = err instanceof StoreError ? err.exitCode : (err.oclif?.exit ?? 1)
  const message = oneLine(err)
  if (json) {
    const code = err instanceof StoreError ? err.code : exit === 2 ? 'ERR_USAGE' : 'ERR_INTERNAL'
    process.stderr.write(JSON.stringify({ error: { code, message } }) + '\n')
  } else {
    process.stderr.write(`${colourFor(process.stderr).red.bold('error:')} ${message}\n`)
  }
  if (process.env.DEBUG && err.stack) process.stderr.write(err.stack + '\n')
  return exit
}

/** `--json` given before any `--`, as oclif decides it for a command: errors that come before a command exists answer the same way. */
export function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--')
  const i = argv.indexOf('--json')
  return i !== -1 && (end === -1 || i < end)
}

/** The message on one line; oclif's parse errors add a header and help hints on further lines. */
function oneLine(err: Error): string {
  const lines = String(err.message ?? err).split('\n').map((l) => l.trim()).filter((l) => l && !/^See more help/.test(l))
  // One failure (a missing required flag) needs no "The following error occurred:" above it.
  if (lines.length === 2 && /^The following errors? occurred:$/.test(lines[0]!)) lines.shift()
  return lines.join(' ') || 'unknown error'
}
