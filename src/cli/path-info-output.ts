import { narInfoFields } from '../store/narinfo.js'
import { type PathInfoJson, pathInfoJson } from '../store/path-info-json.js'
import type { PathInfoEntry } from '../ops/path-info.js'

/** One element of `nix path-info --json` (Nix 2.8's array form); an invalid path is `{path, valid: false}` there. */
export type NixPathInfoJson = { path: string; valid: false } | PathInfoJson

export function pathInfoEntryJson(e: PathInfoEntry, storeDir: string): NixPathInfoJson {
  return e.info ? pathInfoJson(e.info, storeDir, e.closureSize) : { path: e.path, valid: false }
}

export interface Columns {
  size?: boolean
  closureSize?: boolean
  sigs?: boolean
  humanReadable?: boolean
}

/**
 * `nix path-info`'s text lines: the path, padded to the longest when
 * columns follow, then tab-separated NarSize, closure size, and the CA and
 * signatures (Nix also prints `ultimate` for paths built locally; a
 * PathInfo has no such flag).
 */
export function pathInfoLines(entries: PathInfoEntry[], c: Columns): string {
  const width = Math.max(0, ...entries.map((e) => e.path.length))
  const size = c.humanReadable ? humanSize : (n: number) => String(n).padStart(11)
  let out = ''
  for (const e of entries) {
    out += e.path
    if (c.size || c.closureSize || c.sigs) out += ' '.repeat(width - e.path.length)
    const ni = e.info?.narinfo
    if (c.size) out += `\t${size(ni?.narSize ?? 0)}`
    if (c.closureSize) out += `\t${size(e.closureSize ?? 0)}`
    if (c.sigs && e.info) {
      const f = narInfoFields(e.info, '')
      out += `\t${[...(f.ca ? [`ca:${f.ca}`] : []), ...f.sigs].join(' ')}`
    }
    out += '\n'
  }
  return out
}

const UNITS = ' KMGTPEZY'

/**
 * Nix's `-h` size: divided by 1024 while above 1024, then printf's
 * `%6.1f` and the unit letter (a space for bytes). printf rounds the exact
 * binary value half to even, so the rounding is done here in integers.
 */
export function humanSize(bytes: number): string {
  const n = BigInt(bytes)
  let power = 0
  let div = 1n
  while (n > 1024n * div && power < UNITS.length - 1) {
    power++
    div *= 1024n
  }
  let tenths = (n * 10n) / div
  const twice = ((n * 10n) % div) * 2n
  if (twice > div || (twice === div && tenths % 2n === 1n)) tenths++
  return `${`${tenths / 10n}.${tenths % 10n}`.padStart(6)}${UNITS[power]}`
}
