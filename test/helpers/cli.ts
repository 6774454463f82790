import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { type ProcessResult, runProcess } from './spawn.js'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = path.join(REPO, 'bin/run.js')

export type CliResult = ProcessResult

/**
 * Runs the built CLI (`npm run build` first) as a real process. The
 * environment is cleared of store settings so a test never touches the
 * user's default store; pass `--store` or TVIX_STORE explicitly.
 */
export function runCli(args: string[], opts: { env?: Record<string, string>; input?: Uint8Array | string; cwd?: string } = {}): Promise<CliResult> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>) }
  delete env.TVIX_STORE
  delete env.NIX_STORE_DIR
  env.NO_COLOR = '1'
  Object.assign(env, opts.env)
  return runProcess(process.execPath, [BIN, ...args], { env, cwd: opts.cwd ?? REPO, input: opts.input })
}
