import { UsageError } from '../errors.js'

const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, kib: 2 ** 10, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30, t: 2 ** 40, tib: 2 ** 40 }

/** `1048576`, `512M`, `64GiB`, `1T`: a byte count (binary units, case-insensitive). */
export function parseSize(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim())
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined
  if (!m || unit === undefined) throw new UsageError(`--${flag}: invalid size ${JSON.stringify(text)} (want a number of bytes, optionally with K, M, G or T, e.g. 64G)`)
  const n = Math.floor(Number(m[1]) * unit)
  if (!Number.isSafeInteger(n)) throw new UsageError(`--${flag}: size ${JSON.stringify(text)} is too large`)
  return n
}

/** `3298534883328 bytes (3.0 TiB)`: exact, and readable. */
export function formatSize(n: number): string {
  if (!Number.isFinite(n)) return 'more than 2^53 bytes'
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let v = n
  let unit = ''
  for (const u of units) {
    if (v < 1024) break
    v /= 1024
    unit = u
  }
  return unit ? `${n} bytes (${v.toFixed(1)} ${unit})` : `${n} bytes`
}
