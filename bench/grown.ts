/**
 * The grown part of `npm run bench`: everyday commands in a store after
 * many imports against the same commands in a store of one import. A
 * store gains a bundle per import of more than 16 small files and a pack
 * per file over 1 MiB, and a lookup that reads something per bundle or
 * per pack gets slower with every import (cat of one file in a store of
 * 300 bundles read 300 bundle indexes before the bundles' catalog). Rows,
 * each a pair run next to each other (which goes first alternating), the
 * ratio the median of the pairs' CPU ratios:
 *  - cold `cat` of a small bundled file;
 *  - `import` of 40 new small files (a bundle);
 *  - `import` of a new 3 MiB file (a pack; the chunk index is loaded for
 *    its dedup).
 * The grown store is made in this process through the library (the same
 * on-disk format the CLI writes), in ~1/10 of the CLI's time: N imports,
 * each of 20 small files and one file of 1.1 MiB. The imports timed there
 * are each of a new tree, so the store grows by one import per run.
 * Target: ≤ 1.2× the one-import store's CPU for each.
 */
import fs from 'node:fs'
import path from 'node:path'
import { openLocalStore } from '../src/backends/local/index.js'
import { importPath } from '../src/ops/import-paths.js'
import { randomBytes } from '../test/helpers/trees.js'
import { sized } from './quick.js'
import { ratioAtMost, type Unit } from './targets.js'

/** Imports that grow the store (issue 14's scaling check: 300; quick 40). */
export const GROWN_IMPORTS = sized(300, 40)
const ROUNDS = sized(15, 5)

export interface GrownBenchContext {
  tmpRoot: string
  /** Runs our CLI; wall time spawn → exit and its CPU; rejects on a non-zero exit. */
  run(args: string[]): Promise<{ ms: number; cpuMs?: number; stdout: string }>
  addRow(figure: string, unit: Unit, grown: number[], small: number[], target?: ReturnType<typeof ratioAtMost>): void
  check(name: string, ok: boolean, detail: string): void
  rmTree(p: string): void
}

/** A folder of `files` small files and, with `big`, one file of that many bytes; seeded by `seed`. */
function makeTree(dir: string, seed: number, files: number, big = 0): string {
  fs.mkdirSync(dir, { recursive: true })
  for (let i = 0; i < files; i++) fs.writeFileSync(path.join(dir, `f${i}.txt`), `tree ${seed} file ${i}\n`)
  if (big > 0) fs.writeFileSync(path.join(dir, 'big.bin'), randomBytes(big, 50_000 + seed))
  return dir
}

export async function benchGrown(ctx: GrownBenchContext): Promise<number> {
  const t0 = performance.now()
  const base = path.join(ctx.tmpRoot, 'grown')
  const trees = path.join(base, 'trees')
  const grownStore = path.join(base, 'grown-store')
  const grown = await openLocalStore(grownStore)
  let catPath = ''
  console.error(`[grown] ${GROWN_IMPORTS} imports into one store, each of 20 small files and one of 1.1 MiB`)
  for (let i = 0; i < GROWN_IMPORTS; i++) {
    const dir = makeTree(path.join(trees, `g${i}`), i, 20, (1 << 20) + 100_000)
    const p = (await importPath(grown, dir)).storePath
    if (i === GROWN_IMPORTS >> 1) catPath = p
    ctx.rmTree(dir)
  }
  const smallStore = path.join(base, 'small-store')
  const smallPath = (await ctx.run(['import', '--store', smallStore, makeTree(path.join(trees, 'again', `g${GROWN_IMPORTS >> 1}`), GROWN_IMPORTS >> 1, 20, (1 << 20) + 100_000)])).stdout.trim()
  ctx.check('grown: the same tree imported into both stores gives the same path', smallPath === catPath, `${smallPath} vs ${catPath}`)
  const want = `tree ${GROWN_IMPORTS >> 1} file 3\n`
  const cats = [grownStore, smallStore].map((s) => ctx.run(['cat', '--store', s, `${catPath}/f3.txt`]))
  const outs = await Promise.all(cats)
  ctx.check('grown: cat of a bundled file gives its bytes in both stores', outs.every((o) => o.stdout === want), JSON.stringify(outs.map((o) => o.stdout)))

  const pairs = { cat: { grown: [] as number[], small: [] as number[] }, small: { grown: [] as number[], small: [] as number[] }, large: { grown: [] as number[], small: [] as number[] } }
  const cpu = (s: { cpuMs?: number; ms: number }) => s.cpuMs ?? s.ms
  let seed = 1_000_000
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? (['grown', 'small'] as const) : (['small', 'grown'] as const)
    for (const side of order) pairs.cat[side].push(cpu(await ctx.run(['cat', '--store', side === 'grown' ? grownStore : smallStore, `${catPath}/f3.txt`])))
    for (const side of order) {
      // A fresh one-import store each time: it stays one import.
      const store = side === 'grown' ? grownStore : path.join(base, `one-${r}-${side}`)
      if (side === 'small') await ctx.run(['import', '--store', store, makeTree(path.join(trees, `one-${r}`), seed++, 20)])
      pairs.small[side].push(cpu(await ctx.run(['import', '--store', store, makeTree(path.join(trees, `s-${r}-${side}`), seed++, 40)])))
      pairs.large[side].push(cpu(await ctx.run(['import', '--store', store, makeTree(path.join(trees, `l-${r}-${side}`), seed++, 0, 3 << 20)])))
      if (side === 'small') ctx.rmTree(store)
    }
  }
  const target = ratioAtMost(1.2)
  ctx.addRow('cold cat of a small bundled file, CPU', 'ms', pairs.cat.grown, pairs.cat.small, target)
  ctx.addRow('import of 40 new small files, CPU', 'ms', pairs.small.grown, pairs.small.small, target)
  ctx.addRow('import of a new 3 MiB file, CPU', 'ms', pairs.large.grown, pairs.large.small, target)
  ctx.rmTree(base)
  return (performance.now() - t0) / 1000
}
