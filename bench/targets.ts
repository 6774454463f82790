/**
 * The targets as the bench checks them, shared by every results
 * table: a row may carry a target (printed in the `target` column) whose
 * `ok` decides the `met?` column from the row's medians. Rows without a
 * target print `–` in both.
 *
 * MB is 10^6 bytes, as in the MB/s figures; memory is printed in MiB, so a
 * limit of 200 MB reads "≤ 200 MB (190.7 MiB)".
 */

export type Unit = 's' | 'ms' | 'MiB' | 'MB/s' | 'count' | 'bytes'

export interface Target {
  text: string
  /** `ours` is the row's own figure, `ref` its reference column, `ratio` ours/ref. */
  ok(v: { ours: number; ref?: number; ratio?: number }): boolean
}

const MiB = 1024 * 1024

/** ours/reference ≤ x (times against Nix). */
export const ratioAtMost = (x: number): Target => ({
  text: `ratio ≤ ${x.toFixed(1)}`,
  ok: (v) => v.ratio !== undefined && v.ratio <= x,
})

/** A wall time (ms) no larger than `ms`. */
export const msAtMost = (ms: number): Target => ({ text: `≤ ${ms} ms`, ok: (v) => v.ours <= ms })

/** A peak RSS (in MiB) no larger than `mb` MB. */
export const rssAtMost = (mb: number): Target => ({
  text: `≤ ${mb} MB (${((mb * 1e6) / MiB).toFixed(1)} MiB)`,
  ok: (v) => v.ours <= (mb * 1e6) / MiB,
})

/** A peak RSS (in MiB) no larger than `mib` MiB (the limit for the binary cache daemon). */
export const mibAtMost = (mib: number): Target => ({ text: `≤ ${mib} MiB`, ok: (v) => v.ours <= mib })

/** A throughput of at least `mbps` MB/s; with `both`, the reference column must reach it too. */
export const rateAtLeast = (mbps: number, both = false): Target => ({
  text: `${both ? 'both ' : ''}≥ ${mbps} MB/s`,
  ok: (v) => v.ours >= mbps && (!both || (v.ref !== undefined && v.ref >= mbps)),
})

/** A throughput of at least `mbps` MB/s and at least `share` of the reference's (ratio = ours/reference). */
export const rateAndShareAtLeast = (mbps: number, share: number): Target => ({
  text: `≥ ${mbps} MB/s and ratio ≥ ${share}`,
  ok: (v) => v.ours >= mbps && v.ratio !== undefined && v.ratio >= share,
})

/** Our figure no larger than the reference (e.g. bytes moved vs bytes changed). */
export const atMostReference: Target = { text: '≤ reference', ok: (v) => v.ref !== undefined && v.ours <= v.ref }

/** Our figure equal to the reference (e.g. objects moved vs objects changed). */
export const equalsReference: Target = { text: '= reference', ok: (v) => v.ref !== undefined && v.ours === v.ref }

/** Formats a figure for the tables. */
export function fmt(v: number | undefined, unit: Unit): string {
  if (v === undefined) return '–'
  if (unit === 's') return `${(v / 1000).toFixed(3)} s`
  if (unit === 'ms') return `${v.toFixed(1)} ms`
  if (unit === 'MB/s') return `${v.toFixed(1)} MB/s`
  if (unit === 'count') return String(v)
  if (unit === 'bytes') {
    if (v < 1024) return `${v} B`
    if (v < MiB) return `${(v / 1024).toFixed(1)} KiB`
    return `${(v / MiB).toFixed(1)} MiB`
  }
  return `${v.toFixed(1)} MiB`
}

/**
 * A text table: the first column and the last two (target, met?) left
 * aligned, the figures right aligned.
 */
export function textTable(head: string[], body: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const left = (i: number) => i === 0 || i >= head.length - 2
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (left(i) ? c.padEnd(w[i]!) : c.padStart(w[i]!)))
      .join(' | ')
      .trimEnd()
  return [line(head), w.map((n) => '-'.repeat(n)).join('-|-'), ...body.map(line)].join('\n')
}
