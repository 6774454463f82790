import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { type ProcessResult, runProcess, spawnOwned } from './spawn.js'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = path.join(REPO, 'bin/run.js')

export type CliResult = ProcessResult

/**
 * Runs the built CLI (`npm run build` first) as a real process. The
 * environment is cleared of store settings so a test never touches the
 * user's default store; pass `--store` or TVIX_STORE explicitly.
 */
export function runCli(args: string[], opts: { env?: Record<string, string>; input?: Uint8Array | string; cwd?: string } = {}): Promise<CliResult> {
  return runProcess(process.execPath, [BIN, ...args], { env: cliEnv(opts.env), cwd: opts.cwd ?? REPO, input: opts.input })
}

/** The environment runCli gives the CLI: no store settings of the user's, no colour. */
export function cliEnv(extra?: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>) }
  delete env.TVIX_STORE
  delete env.NIX_STORE_DIR
  env.NO_COLOR = '1'
  return Object.assign(env, extra)
}

export interface CliExit {
  /** Exit code, or null when a signal ended the process. */
  code: number | null
  signal: NodeJS.Signals | null
  stdout: Buffer
  stderr: string
  /** Wall time from spawn to exit. */
  ms: number
}

/**
 * Starts the built CLI as a child process (stdin closed unless piped) and returns at
 * once, for tests that signal it mid-run; `exited` settles when it is gone.
 */
export function spawnCli(args: string[], opts: { env?: Record<string, string>; stdout?: number; stdin?: 'pipe' } = {}): { child: ChildProcess; exited: Promise<CliExit> } {
  const started = performance.now()
  // `stdout`: a file descriptor to give the child instead of a pipe (/dev/full); `stdin: 'pipe'` to feed it.
  const child = spawnOwned(process.execPath, [BIN, ...args], { env: cliEnv(opts.env), cwd: REPO, stdio: [opts.stdin ?? 'ignore', opts.stdout ?? 'pipe', 'pipe'] })
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout?.on('data', (c: Buffer) => out.push(c))
  child.stderr!.on('data', (c: Buffer) => err.push(c))
  const exited = new Promise<CliExit>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString(), ms: performance.now() - started }),
    )
  })
  return { child, exited }
}

/** Exactly one line on stderr, an `error: …` line matching `re`: how every command reports a failure. */
export function assertOneErrorLine(stderr: string, re: RegExp): void {
  const lines = stderr.split('\n').filter(Boolean)
  assert.equal(lines.length, 1, `stderr: ${stderr}`)
  assert.match(lines[0]!, /^error: /)
  assert.match(lines[0]!, re)
}

/** Under --json: exactly one line on stderr, `{"error":{"code","message"}}` with `code` and a message matching `re`. */
export function assertOneJsonError(stderr: string, code: string, re: RegExp): void {
  const lines = stderr.split('\n').filter(Boolean)
  assert.equal(lines.length, 1, `stderr: ${stderr}`)
  assert.match(stderr, /^[^\n]+\n$/, 'one line, newline-terminated')
  const parsed = JSON.parse(lines[0]!) as { error: { code: string; message: string } }
  assert.deepEqual(Object.keys(parsed), ['error'])
  assert.deepEqual(Object.keys(parsed.error), ['code', 'message'])
  assert.equal(parsed.error.code, code)
  assert.match(parsed.error.message, re)
}
