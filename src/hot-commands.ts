import { type CommandClass, type HotCommands, runFast } from './cli/fast-path.js'

const load = async (m: Promise<{ default: unknown }>): Promise<CommandClass> => (await m).default as CommandClass

/**
 * Commands scripts call hundreds of times. bin/run.js runs them through
 * runFast, each from a bundle of this file with only its own line
 * (dist/fast-path.<command>.cjs, npm run build), without oclif's
 * runtime. A new hot command is one line here, written as these are; it
 * must be a plain command (no aliases, hooks, topics or deprecation), as
 * these are. Each loads on demand: `--version`, or a command that is not
 * here, evaluates none of them.
 */
export const HOT_COMMANDS: HotCommands = {
  cat: () => load(import('./commands/cat.js')),
  copy: () => load(import('./commands/copy.js')),
  // Tests and service managers start daemons often: without oclif's runtime a start costs half the CPU.
  daemon: () => load(import('./commands/daemon.js')),
  delete: () => load(import('./commands/delete.js')),
  'export-nar': () => load(import('./commands/export-nar.js')),
  gc: () => load(import('./commands/gc.js')),
  import: () => load(import('./commands/import.js')),
  ls: () => load(import('./commands/ls.js')),
  narinfo: () => load(import('./commands/narinfo.js')),
  'path-info': () => load(import('./commands/path-info.js')),
  query: () => load(import('./commands/query.js')),
  sign: () => load(import('./commands/sign.js')),
  verify: () => load(import('./commands/verify.js')),
}

/** bin/run.js's question: true if `argv` ran here, false if it is oclif's to run. */
export function run(argv: string[], root: string): Promise<boolean> {
  return runFast(argv, root, HOT_COMMANDS)
}
