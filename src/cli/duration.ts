import { UsageError } from '../errors.js'

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 }

/** `90s`, `10m`, `36h`, `30d`, `2w`, or `0`: a duration in milliseconds. */
export function parseDuration(text: string, flag: string): number {
  if (text === '0') return 0
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(text.trim())
  if (!m) throw new UsageError(`--${flag}: invalid duration ${JSON.stringify(text)} (want a number and a unit: s, m, h, d or w, e.g. 30d)`)
  return Number(m[1]) * UNIT_MS[m[2]!]!
}

/** gc keeps anything younger than this by default: it may belong to an upload still in progress through a daemon. */
export const DEFAULT_GRACE = '10m'
export const DEFAULT_GRACE_MS = 10 * 60_000

/** How long gc waits for writers inside a commit (milliseconds each) before giving up: see StoreLocks.exclusive. */
export const DEFAULT_MAX_WAIT = '2m'
