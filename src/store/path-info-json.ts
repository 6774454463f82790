import { InvalidInputError } from '../errors.js'
import * as nixbase32 from './nixbase32.js'
import { renderCa } from './narinfo.js'
import { type PathInfo, storePathOf } from './path-info.js'
import { absolute, basename } from './store-path.js'

/**
 * A path's metadata as Nix 2.8's `nix path-info --json` writes one entry:
 * the same keys in the same order, hashes in SRI form (`sha256-<base64>`),
 * references and deriver as absolute paths, `ca` and `signatures` only
 * when the path has them. Fields our PathInfo does not hold
 * (registrationTime, ultimate) are left out rather than invented.
 */
export interface PathInfoJson {
  path: string
  narHash: string
  narSize: number
  references: string[]
  ca?: string
  /** With `nix path-info -S`. */
  closureSize?: number
  deriver?: string
  signatures?: string[]
}

/** What `nix path-info --json --store file://…` adds for a path in a binary cache: where its NAR file is. */
export interface NarInfoJson extends PathInfoJson {
  url: string
  downloadHash: string
  downloadSize: number
}

/** `sha256-<base64>`: how Nix's JSON writes a hash. */
export function sriSha256(digest: Uint8Array): string {
  return `sha256-${Buffer.from(digest).toString('base64')}`
}

/** `closureSize` goes in where Nix puts it (with -S), between `ca` and `deriver`. */
export function pathInfoJson(info: PathInfo, storeDir: string, closureSize?: number): PathInfoJson {
  const ni = info.narinfo
  if (!ni) throw new InvalidInputError('this PathInfo has no NAR metadata')
  const out: PathInfoJson = {
    path: absolute(storePathOf(info), storeDir),
    narHash: sriSha256(ni.narSha256),
    narSize: ni.narSize,
    references: ni.referenceNames.map((n) => `${storeDir}/${n}`).sort(),
  }
  if (ni.ca) out.ca = renderCa(ni.ca)
  if (closureSize !== undefined) out.closureSize = closureSize
  if (ni.deriver) out.deriver = `${storeDir}/${basename(ni.deriver)}.drv`
  if (ni.signatures.length > 0) out.signatures = ni.signatures.map((s) => `${s.name}:${Buffer.from(s.data).toString('base64')}`)
  return out
}

/** The entry for an uncompressed NAR (the narinfo we write): the file is the NAR itself. */
export function narInfoJson(info: PathInfo, storeDir: string): NarInfoJson {
  const base = pathInfoJson(info, storeDir)
  const narSha256 = info.narinfo!.narSha256
  return { ...base, url: `nar/${nixbase32.encode(narSha256)}.nar`, downloadHash: sriSha256(narSha256), downloadSize: base.narSize }
}
