import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { type ProcessResult, runProcess } from './spawn.js'

/** Settings that let Nix 2.8 run as root here with a private store. */
export const NIX_ENV = {
  ...process.env,
  NIX_CONFIG: 'experimental-features = nix-command\nsandbox = false\nbuild-users-group =\nsubstituters =',
}

/** Why real Nix cannot be used, or undefined when it can. */
export function nixMissing(): string | undefined {
  const r = spawnSync('nix-store', ['--version'], { encoding: 'utf8' })
  if (r.error || r.status !== 0) return 'nix-store not found on PATH (install nix-bin; .ci/run does)'
  return undefined
}

/** A private Nix store under `root` (no daemon, no /nix needed). */
export class NixStore {
  readonly url: string
  constructor(readonly root: string) {
    this.url = `local?root=${root}`
  }

  run(cmd: string, args: string[], opts: { input?: Uint8Array } = {}): Buffer {
    return execFileSync(cmd, args, { env: NIX_ENV, input: opts.input, maxBuffer: 1 << 30 })
  }

  /** `nix-store --add` as Nix prints it. */
  add(p: string): string {
    return this.run('nix-store', ['--store', this.url, '--add', p]).toString().trim()
  }

  /** The store path `nix-store --add` would give `p` (`nix store add-path --dry-run`: nothing is copied). */
  pathOf(p: string, name?: string): string {
    return this.run('nix', ['store', 'add-path', '--dry-run', '--store', this.url, ...(name ? ['--name', name] : []), p]).toString().trim()
  }

  /** `nix-store --dump` of any filesystem path. */
  static dump(p: string): Buffer {
    return execFileSync('nix-store', ['--dump', p], { env: NIX_ENV, maxBuffer: 1 << 30 })
  }

  /** The .narinfo `nix copy --to file://…?compression=none` writes for `storePath`. */
  narinfo(storePath: string, cacheDir: string): string {
    this.run('nix', ['copy', '--store', this.url, '--to', `file://${cacheDir}?compression=none`, storePath])
    const hash = path.basename(storePath).slice(0, 32)
    return fs.readFileSync(path.join(cacheDir, `${hash}.narinfo`), 'utf8')
  }
}

export type NixResult = ProcessResult

/**
 * Runs a Nix command (`nix`, `nix-store`, …) asynchronously with NIX_ENV and
 * never throws on a non-zero exit, so failures can be compared with ours.
 */
export function runNix(cmd: string, args: string[], opts: { input?: Uint8Array } = {}): Promise<NixResult> {
  return runProcess(cmd, args, { env: NIX_ENV, input: opts.input })
}

/** Stdout of a Nix command that must succeed (its stderr in the failure). */
export async function nixOut(cmd: string, args: string[]): Promise<string> {
  const r = await runNix(cmd, args)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}`)
  return r.stdout.toString()
}

/** Stdout of `nix path-info ARGS`, which must succeed. */
export function nixPathInfo(args: string[]): Promise<string> {
  return nixOut('nix', ['path-info', ...args])
}

/** Nix's `path-info --sigs` column also says `ultimate` for paths built locally; a PathInfo has no such flag. */
export const withoutUltimate = (text: string) => text.replace(/\tultimate( |$)/gm, '\t')
