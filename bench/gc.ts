/**
 * gc and verify on a store of ~100k objects: two trees of 50k small files
 * each (100 directories of 500), distinct contents, seeded. Times, as
 * whole CLI runs: a gc that finds nothing to delete (the full mark over
 * 100k objects), a full verify, and `gc --delete` of one tree (sweeping
 * its 50k blobs and 101 directories), next to `nix-store --delete` of the
 * same tree in a private Nix store.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { sized } from './quick.js'

/** Two trees of DIRS × FILES_PER_DIR files: 100 × 500 (10 × 50 under BENCH_QUICK=1). */
const DIRS = sized(100, 10)
const FILES_PER_DIR = sized(500, 50)
/** Files in each of the two trees. */
export const GC_TREE_FILES = DIRS * FILES_PER_DIR

export interface GcRow {
  figure: string
  ours: number
  nix?: number
}

function makeTree(root: string, tag: string): void {
  for (let d = 0; d < DIRS; d++) {
    const dir = path.join(root, `d${d}`)
    fs.mkdirSync(dir, { recursive: true })
    for (let f = 0; f < FILES_PER_DIR; f++) fs.writeFileSync(path.join(dir, `f${f}`), `${tag} ${d} ${f}\n`)
  }
}

function timed(argv: string[], env: NodeJS.ProcessEnv): { seconds: number; stdout: string } {
  const t = performance.now()
  const r = spawnSync(argv[0]!, argv.slice(1), { env, encoding: 'utf8', maxBuffer: 1 << 28 })
  const seconds = (performance.now() - t) / 1000
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (${r.status}): ${r.stderr}`)
  return { seconds, stdout: r.stdout }
}

export async function benchGc(work: string, cli: string, nixEnv: NodeJS.ProcessEnv): Promise<GcRow[]> {
  const a = path.join(work, 'A')
  const b = path.join(work, 'B')
  makeTree(a, 'A')
  makeTree(b, 'B')
  const store = path.join(work, 'ours')
  const ours = (args: string[]) => timed([process.execPath, cli, ...args, '--store', store], process.env)
  const pathB = ours(['import', a, b]).stdout.trim().split('\n')[1]!
  const objects = (fs.readdirSync(store, { recursive: true }) as string[]).filter((f) => /^(blobs|dirs|pathinfo)\//.test(f) && fs.statSync(path.join(store, f)).isFile()).length
  console.error(`[gc] store of ${objects} objects built`)
  const rows: GcRow[] = []
  execFileSync('sync')
  const idle = ours(['gc', '--grace', '0', '--json'])
  rows.push({ figure: `gc, nothing to delete (${objects} objects marked)`, ours: idle.seconds })
  rows.push({ figure: '… of which writers were held off', ours: JSON.parse(idle.stdout).writersHeldOffSeconds })
  rows.push({ figure: `verify (${objects} objects re-hashed)`, ours: ours(['verify']).seconds })

  const nixRoot = path.join(work, 'nix')
  const nix = (args: string[]) => timed(['nix-store', '--store', `local?root=${nixRoot}`, ...args], nixEnv)
  const nixB = nix(['--add', a, b]).stdout.trim().split('\n')[1]!
  execFileSync('sync')
  const oursDelete = ours(['gc', '--grace', '0', '--json', '--delete', pathB])
  const nixDelete = nix(['--delete', nixB]).seconds
  rows.push({ figure: `gc --delete of a path of ${DIRS * FILES_PER_DIR} files`, ours: oursDelete.seconds, nix: nixDelete })
  rows.push({ figure: '… of which writers were held off', ours: JSON.parse(oursDelete.stdout).writersHeldOffSeconds })
  return rows
}

export function gcTable(rows: GcRow[]): string {
  const lines = [
    'figure                                          | tvix-store | nix-store | ratio | target',
    '------------------------------------------------|------------|-----------|-------|-------',
  ]
  for (const r of rows) {
    const nix = r.nix === undefined ? '–' : `${r.nix.toFixed(2)} s`
    const ratio = r.nix === undefined ? '–' : (r.ours / r.nix).toFixed(2)
    lines.push(`${r.figure.padEnd(48)}| ${`${r.ours.toFixed(2)} s`.padStart(10)} | ${nix.padStart(9)} | ${ratio.padStart(5)} | –`)
  }
  return lines.join('\n')
}
