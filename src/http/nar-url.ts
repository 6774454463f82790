import { narFileExtension } from '../codecs/index.js'
import * as nixbase32 from '../store/nixbase32.js'
import type { PathInfo } from '../store/path-info.js'
import { HASH_PART_LEN } from '../store/store-path.js'

/** Length of a SHA-256 in nixbase32. */
const NAR_HASH_LEN = 52

/**
 * The compressions the cache can serve NARs in (`daemon --http-compression`):
 * each has its own file name ending, so the URL says which one a client
 * asked for. Fast to decompress, or (xz) what every Nix expects.
 */
export const SERVED_COMPRESSIONS = ['none', 'zstd', 'xz', 'br'] as const
export type ServedCompression = (typeof SERVED_COMPRESSIONS)[number]

/**
 * The narinfo's `URL:` for a path: `nar/<hash part>-<NAR hash>.nar[.zst|.xz|.br]`. The
 * hash part finds the PathInfo (the store's only index), the NAR hash
 * checks it is still the same content, so the server needs no NAR-hash
 * index, and a URL that outlived its path's content is a 404, never
 * other bytes.
 */
export function narUrl(hashPart: string, narSha256: Uint8Array, compression: ServedCompression = 'none'): string {
  return `nar/${hashPart}-${nixbase32.encode(narSha256)}${narFileExtension(compression)}`
}

/**
 * The two hashes and the compression of a NAR URL's file name
 * (`<hash part>-<NAR hash>.nar[.zst|.xz|.br]`), or undefined for any other name.
 */
export function parseNarFileName(name: string): { digest: Uint8Array; narSha256: Uint8Array; compression: ServedCompression } | undefined {
  const m = new RegExp(`^([0-9a-z]{${HASH_PART_LEN}})-([0-9a-z]{${NAR_HASH_LEN}})(\\.nar.*)$`).exec(name)
  const compression = m && SERVED_COMPRESSIONS.find((c) => narFileExtension(c) === m[3])
  if (!compression) return undefined
  try {
    return { digest: nixbase32.decode(m[1]!), narSha256: nixbase32.decode(m[2]!), compression }
  } catch {
    return undefined
  }
}

/** Whether `info` still describes the NAR a URL named. */
export function sameNar(info: PathInfo, narSha256: Uint8Array): boolean {
  const have = info.narinfo?.narSha256
  return have !== undefined && Buffer.from(have).equals(narSha256)
}
