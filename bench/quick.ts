/**
 * BENCH_QUICK=1: every part of the bench on smaller inputs with fewer
 * repetitions, the whole run in under 2 minutes on an idle 2-core machine,
 * the same tables (marked quick). For checking that the bench and the
 * figures work, and for a rough ratio; the full run is the one to quote.
 */
export const QUICK = process.env.BENCH_QUICK === '1'

/** `full` normally, `quick` under BENCH_QUICK=1. */
export const sized = <T>(full: T, quick: T): T => (QUICK ? quick : full)

/** How a size reads in the tables: "256 MiB", or "1 GiB". */
export function sizeText(bytes: number): string {
  const MiB = 1024 * 1024
  return bytes >= 1024 * MiB && bytes % (1024 * MiB) === 0 ? `${bytes / (1024 * MiB)} GiB` : `${Math.round(bytes / MiB)} MiB`
}
