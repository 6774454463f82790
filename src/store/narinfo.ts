import { InvalidInputError } from '../errors.js'
import * as nixbase32 from './nixbase32.js'
import { CaHash, type ContentAddress, type PathInfo, storePathOf } from './path-info.js'
import { type StorePath, absolute, basename } from './store-path.js'

const CA_PREFIX: Record<CaHash, string> = {
  [CaHash.NAR_SHA256]: 'fixed:r:sha256',
  [CaHash.NAR_SHA1]: 'fixed:r:sha1',
  [CaHash.NAR_SHA512]: 'fixed:r:sha512',
  [CaHash.NAR_MD5]: 'fixed:r:md5',
  [CaHash.TEXT_SHA256]: 'text:sha256',
  [CaHash.FLAT_SHA1]: 'fixed:sha1',
  [CaHash.FLAT_MD5]: 'fixed:md5',
  [CaHash.FLAT_SHA256]: 'fixed:sha256',
  [CaHash.FLAT_SHA512]: 'fixed:sha512',
}

/** Nix's CA string, e.g. `fixed:r:sha256:<nixbase32>` (SPEC 4.4). */
export function renderCa(ca: ContentAddress): string {
  const prefix = CA_PREFIX[ca.type]
  if (!prefix) throw new InvalidInputError(`unknown CA hash type ${ca.type}`)
  return `${prefix}:${nixbase32.encode(ca.digest)}`
}

/** Parses a Nix CA string (`fixed:r:sha256:<nb32>`, `text:sha256:<nb32>`, …). */
export function parseCa(s: string): ContentAddress {
  const i = s.lastIndexOf(':')
  const prefix = s.slice(0, i)
  const entry = Object.entries(CA_PREFIX).find(([, p]) => p === prefix)
  if (!entry || i < 0) throw new InvalidInputError(`unsupported content address ${JSON.stringify(s)}`)
  return { type: Number(entry[0]) as CaHash, digest: parseHashDigest(s.slice(i + 1), s) }
}

/** A digest in nixbase32, hex or base64, as Nix writes them in different places. */
export function parseHashDigest(text: string, context: string): Uint8Array {
  try {
    if (/^[0-9a-f]+$/.test(text) && [32, 40, 64, 128].includes(text.length)) return Buffer.from(text, 'hex')
    if (/^[0-9a-df-np-sv-z]+$/.test(text)) return nixbase32.decode(text)
    const b = Buffer.from(text, 'base64')
    if (b.length > 0 && b.toString('base64') === text) return b
  } catch {}
  throw new InvalidInputError(`cannot read the hash in ${JSON.stringify(context)}`)
}

/** `sha256:<nb32|hex>` or SRI `sha256-<base64>`: the 32 raw bytes. */
export function parseSha256(s: string): Uint8Array {
  const m = /^sha256[:-](.+)$/.exec(s)
  const d = m ? parseHashDigest(m[1]!, s) : undefined
  if (!d || d.length !== 32) throw new InvalidInputError(`expected a sha256 hash, got ${JSON.stringify(s)}`)
  return d
}

/** The fields of a .narinfo, as a script would want them. */
export interface NarInfoFields {
  storePath: string
  url: string
  compression: string
  fileHash: string
  fileSize: number
  narHash: string
  narSize: number
  references: string[]
  deriver?: string
  sigs: string[]
  ca?: string
}

/**
 * The narinfo Nix writes for an uncompressed NAR (SPEC 8.2): the file is
 * the NAR itself, so FileHash/FileSize equal NarHash/NarSize.
 */
export function narInfoFields(info: PathInfo, storeDir: string): NarInfoFields {
  const ni = info.narinfo
  if (!ni) throw new InvalidInputError('this PathInfo has no NAR metadata')
  const narHash = `sha256:${nixbase32.encode(ni.narSha256)}`
  const deriver: StorePath | undefined = ni.deriver
  return {
    storePath: absolute(storePathOf(info), storeDir),
    url: `nar/${nixbase32.encode(ni.narSha256)}.nar`,
    compression: 'none',
    fileHash: narHash,
    fileSize: ni.narSize,
    narHash,
    narSize: ni.narSize,
    references: [...ni.referenceNames].sort(),
    deriver: deriver && `${basename(deriver)}.drv`,
    sigs: ni.signatures.map((s) => `${s.name}:${Buffer.from(s.data).toString('base64')}`),
    ca: ni.ca && renderCa(ni.ca),
  }
}

export function renderNarInfo(f: NarInfoFields): string {
  const lines = [
    `StorePath: ${f.storePath}`,
    `URL: ${f.url}`,
    `Compression: ${f.compression}`,
    `FileHash: ${f.fileHash}`,
    `FileSize: ${f.fileSize}`,
    `NarHash: ${f.narHash}`,
    `NarSize: ${f.narSize}`,
    `References: ${f.references.join(' ')}`,
  ]
  if (f.deriver) lines.push(`Deriver: ${f.deriver}`)
  for (const s of f.sigs) lines.push(`Sig: ${s}`)
  if (f.ca) lines.push(`CA: ${f.ca}`)
  return lines.join('\n') + '\n'
}
