import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Command } from '@oclif/core/command'
import type { Config } from '@oclif/core/config'
import { setLogger } from '@oclif/core/logger'
import { installQuickStdout } from './quick-stdout.js'
import type { Failure } from './report.js'

/** A command class as oclif's Command.run constructs it. */
export type CommandClass = Pick<typeof Command, 'id'> & (new (argv: string[], config: Config) => Command)
/** The hot commands by id, each loaded on demand (src/hot-commands.ts). */
export type HotCommands = Record<string, () => Promise<CommandClass>>

type PackageJson = { name: string; version: string; oclif: { bin: string } }

/**
 * Runs `argv` as oclif would, if it is `--version` or one of `commands`,
 * without oclif's runtime: no Config.load, no plugin scan, no manifest.
 * Returns false (having done nothing) for anything else, which stays
 * oclif's: help, other commands, and any run with DEBUG set (oclif's
 * debug log is its runtime's). `root` is the package's folder.
 */
export async function runFast(argv: string[], root: string, commands: HotCommands): Promise<boolean> {
  if (process.env.DEBUG !== undefined) return false
  // As oclif's run(): `--version` only as the first word, `--help` anywhere before `--`.
  const version = argv[0] === '--version'
  const hot = Object.hasOwn(commands, argv[0] ?? '') ? commands[argv[0]!] : undefined
  if (!version && (!hot || beforeDashDash(argv).includes('--help'))) return false
  // oclif names the platform `wsl` under WSL; that one case stays oclif's.
  if (os.release().toLowerCase().includes('microsoft')) return false
  const pjson = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as PackageJson
  // TVIX_STORE_DEBUG switches on oclif's debug settings (its warnings printed), also the runtime's.
  if (scopedEnvVarKeys(pjson.oclif.bin, 'DEBUG').some((k) => process.env[k] !== undefined)) return false
  installQuickStdout()
  // Once the event loop is empty (output written, the store closed), exit as process.exit does: a
  // natural exit first tears down V8's heap, ~8 ms of CPU for the bundle's code here, for nothing.
  if (!process.listeners('beforeExit').includes(exitNow)) process.once('beforeExit', exitNow)
  if (version) {
    process.stdout.write(userAgent(pjson) + '\n')
    return true
  }
  const Cmd = await hot!()
  // DEBUG is unset, so every debug namespace is off: a silent logger prints what oclif's would, without loading `debug`.
  setLogger({ logger: silentLogger('oclif') } as never)
  Cmd.id = argv[0]!
  try {
    // What oclif's Command.run does once it has a Config: construct, then _run (init, run, catch, finally).
    const cmd = new Cmd(argv.slice(1), commandConfig(pjson, Cmd)) as unknown as { _run(): Promise<unknown> }
    await cmd._run()
  } catch (e) {
    // StoreCommand.catch reports every failure of the command itself; as in main(), nothing else escapes unreported.
    const { reportError, wantsJson } = await import('./report.js')
    process.exitCode = reportError(e as Failure, wantsJson(argv))
  }
  return true
}

const exitNow = (): never => process.exit()

function beforeDashDash(argv: string[]): string[] {
  const end = argv.indexOf('--')
  return end === -1 ? argv : argv.slice(0, end)
}

/**
 * What a command reads of oclif's Config while it runs, with the values
 * Config.load would give for this package (no plugins, hooks or exit-code
 * overrides; `TVIX_STORE_CONTENT_TYPE=json` still means --json).
 */
function commandConfig(pjson: PackageJson, Cmd: CommandClass): Config {
  const bin = pjson.oclif.bin
  const keys = (k: string): string[] => scopedEnvVarKeys(bin, k)
  const config = {
    bin,
    name: pjson.name,
    version: pjson.version,
    pjson,
    userAgent: userAgent(pjson),
    topicSeparator: ' ',
    commandIDs: [Cmd.id],
    findCommand: () => Cmd,
    findTopic: () => undefined,
    scopedEnvVarKeys: keys,
    scopedEnvVarKey: (k: string) => keys(k)[0],
    scopedEnvVar: (k: string) => process.env[keys(k).find((key) => process.env[key]) ?? ''],
    runHook: async () => ({ failures: [], successes: [] }),
  }
  return config as unknown as Config
}

/** As oclif's Config names the variables of this CLI (`TVIX_STORE_<K>`; it has no bin aliases). */
function scopedEnvVarKeys(bin: string, k: string): string[] {
  return [[bin.replaceAll('@', '').replaceAll(/[/-]/g, '_'), k].join('_').toUpperCase()]
}

/** As Config.load words it (the platform is `wsl` only under WSL, which runFast leaves to oclif). */
function userAgent(pjson: PackageJson): string {
  return `${pjson.name}/${pjson.version} ${os.platform()}-${os.arch()} node-${process.version}`
}

type Logger = { namespace: string; child(ns: string, delimiter?: string): Logger } & Record<'debug' | 'error' | 'info' | 'trace' | 'warn', () => void>

function silentLogger(namespace: string): Logger {
  const off = (): void => {}
  return { namespace, child: (ns, d = ':') => silentLogger(`${namespace}${d}${ns}`), debug: off, error: off, info: off, trace: off, warn: off }
}
