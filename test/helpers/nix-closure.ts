import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { runCli } from './cli.js'
import { NIX_ENV, nixMissing, runNix } from './nix.js'

/**
 * A small closure built by real Nix, shaped to exercise queries: a diamond
 * (top -> left, right -> leaf), a symlink reference, and a self-reference
 * (right). Built in the machine's /nix/store (a chroot store cannot run
 * /bin/sh builders); a second build is a no-op.
 *
 *   fx-top -> fx-left  -> fx-leaf
 *          -> fx-right -> fx-leaf, fx-right
 */
const DIAMOND = `
let
  mk = name: script: builtins.derivation { inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" script ]; };
  leaf = mk "fx-leaf" "echo leaf > $out";
  left = mk "fx-left" "/bin/mkdir $out; echo \${leaf} > $out/ref";
  right = mk "fx-right" "/bin/mkdir $out; /bin/ln -s \${leaf} $out/link; echo $out > $out/self";
in mk "fx-top" "/bin/mkdir $out; echo \${left} \${right} > $out/refs"
`

/** One entry of `nix path-info --json --recursive` (Nix 2.8's array form). */
export interface NixPathInfo {
  path: string
  narHash: string
  narSize: number
  references: string[]
  deriver?: string
  ultimate?: boolean
}

export interface NixClosure {
  top: string
  /** `nix path-info --json --recursive top`, sorted by path. */
  listing: NixPathInfo[]
  /** Path by derivation name: `fx-top`, `fx-left`, `fx-right`, `fx-leaf`. */
  byName: Record<string, string>
}

export type BuiltClosure = { closure: NixClosure; skip?: undefined } | { closure?: undefined; skip: string }

/** Builds the diamond with nix-build, or says why it cannot (print it as the skip reason). */
export function buildNixClosure(workDir: string): BuiltClosure {
  const missing = nixMissing()
  if (missing) return { skip: missing }
  const file = path.join(workDir, 'diamond.nix')
  fs.writeFileSync(file, DIAMOND)
  let top: string
  try {
    top = execFileSync('nix-build', [file, '--no-out-link'], { env: NIX_ENV, stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim()
  } catch (e) {
    return { skip: `nix-build of the test closure failed (needs root and a writable /nix): ${String((e as Error).message).split('\n')[0]}` }
  }
  const listing = JSON.parse(execFileSync('nix', ['path-info', '--json', '--recursive', top], { env: NIX_ENV }).toString()) as NixPathInfo[]
  listing.sort((a, b) => (a.path < b.path ? -1 : 1))
  const byName = Object.fromEntries(listing.map((e) => [path.basename(e.path).slice(33), e.path]))
  return { closure: { top, listing, byName } }
}

/** Copies the closure from /nix/store into our store at `storeUrl` (`copy --closure -`). */
export async function importNixClosure(closure: NixClosure, storeUrl: string): Promise<void> {
  const r = await runCli(['copy', '--closure', '-', '--to', storeUrl], { input: JSON.stringify(closure.listing) })
  if (r.code !== 0) throw new Error(`copy --closure into ${storeUrl} failed: ${r.stderr}`)
}

/**
 * Why Nix's referrers of the diamond cannot be compared with ours, if other
 * paths in /nix/store refer to it (said on its own line), or undefined.
 */
export async function whyReferrersDiffer(closure: NixClosure): Promise<string | undefined> {
  const mine = new Set(closure.listing.map((e) => e.path))
  for (const p of mine) {
    const r = await runNix('nix-store', ['-q', '--referrers', p])
    if (r.code !== 0) throw new Error(`nix-store -q --referrers ${p} failed: ${r.stderr}`)
    const others = r.stdout.toString().split('\n').filter((l) => l && !mine.has(l))
    if (others.length > 0) {
      const why = `${others[0]} in /nix/store refers to ${p}, so Nix's referrers are not the diamond's alone`
      console.log(`skipping the referrers comparisons: ${why}`)
      return why
    }
  }
  return undefined
}
