import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = path.join(REPO, 'bin/run.js')

export interface CliResult {
  code: number
  stdout: Buffer
  stderr: string
}

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
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd: opts.cwd ?? REPO, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => err.push(c))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }))
    child.stdin.on('error', () => {})
    child.stdin.end(opts.input ?? '')
  })
}
