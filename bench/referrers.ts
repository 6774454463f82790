/**
 * `query --referrers` on a store of 10,000 paths: the referrers index
 * against a scan of every PathInfo (what a store without the index, or a
 * client with only List, has to do). Two shapes, filled through the local
 * API (10k CLI calls would measure process start-up): a fan (every path
 * refers to one leaf: 9,999 referrers) and a chain (each path refers to the
 * one before: 1 referrer). Also times the puts, with the index entries they
 * now write. Run: node --import tsx bench/referrers.ts
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { openLocalStore } from '../src/backends/local/index.js'
import * as nixbase32 from '../src/store/nixbase32.js'
import type { PathInfo } from '../src/store/path-info.js'
import { baseNameOf, putSyntheticPath } from '../test/helpers/path-infos.js'

const N = Number(process.env.BENCH_PATHS ?? 10_000)
const REPS = 5

async function scan(list: AsyncIterable<PathInfo>, digest: Uint8Array): Promise<number> {
  let n = 0
  for await (const info of list) if (info.references.some((r) => Buffer.compare(r, digest) === 0)) n++
  return n
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
}

async function time(fn: () => Promise<number>): Promise<{ ms: number; found: number }> {
  const ms: number[] = []
  let found = 0
  for (let i = 0; i < REPS; i++) {
    const t = performance.now()
    found = await fn()
    ms.push(performance.now() - t)
  }
  return { ms: median(ms), found }
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-referrers-'))
try {
  for (const shape of ['fan', 'chain'] as const) {
    const store = await openLocalStore(path.join(work, shape))
    const t0 = performance.now()
    const paths: PathInfo[] = [await putSyntheticPath(store.pathInfos, `${shape}-0`)]
    for (let i = 1; i < N; i++) paths.push(await putSyntheticPath(store.pathInfos, `${shape}-${i}`, [shape === 'fan' ? paths[0]! : paths[i - 1]!]))
    const putMs = performance.now() - t0
    const target = paths[shape === 'fan' ? 0 : N / 2]!
    const digest = nixbase32.decode(baseNameOf(target).slice(0, 32))
    const indexed = await time(async () => (await store.pathInfos.referrers(digest)).length)
    const scanned = await time(() => scan(store.pathInfos.list(), digest))
    if (indexed.found !== scanned.found) throw new Error(`index found ${indexed.found}, scan ${scanned.found}`)
    console.log(
      `${shape} of ${N}: ${N} puts ${(putMs / 1000).toFixed(1)} s (${(putMs / N).toFixed(2)} ms each); ` +
        `referrers (${indexed.found}) via index ${indexed.ms.toFixed(1)} ms, via scan ${scanned.ms.toFixed(1)} ms (median of ${REPS})`,
    )
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true })
}
