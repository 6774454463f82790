import { InvalidInputError } from '../errors.js'
import * as nixbase32 from './nixbase32.js'
import type { Node } from '../castore/node.js'
import { CaHash, type ContentAddress, type PathInfo, type Signature, storePathOf } from './path-info.js'
import { type StorePath, absolute, basename, parseBasename } from './store-path.js'

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
  /** Hash and size of the (compressed) file; absent where it is compressed as it is served. */
  fileHash?: string
  fileSize?: number
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
    ...(f.fileHash === undefined ? [] : [`FileHash: ${f.fileHash}`]),
    ...(f.fileSize === undefined ? [] : [`FileSize: ${f.fileSize}`]),
    `NarHash: ${f.narHash}`,
    `NarSize: ${f.narSize}`,
    `References: ${f.references.join(' ')}`,
  ]
  if (f.deriver) lines.push(`Deriver: ${f.deriver}`)
  for (const s of f.sigs) lines.push(`Sig: ${s}`)
  if (f.ca) lines.push(`CA: ${f.ca}`)
  return lines.join('\n') + '\n'
}

/** `name:base64` as narinfos and `nix path-info --json` write signatures. */
export function parseSignature(text: string): Signature {
  const i = text.indexOf(':')
  const data = Buffer.from(text.slice(i + 1), 'base64')
  if (i <= 0 || data.length === 0 || data.toString('base64') !== text.slice(i + 1)) throw new InvalidInputError(`invalid signature ${JSON.stringify(text)}: want name:base64`)
  return { name: text.slice(0, i), data }
}

/**
 * Parses a .narinfo as Nix 2.8 does (SPEC 8.2): `Key: value` lines, each
 * ending in a newline, no blank lines; StorePath, URL, NarHash and a
 * NarSize > 0 required; a missing Compression means bzip2; unknown keys
 * (System, …) ignored. The store path must lie in `storeDir`.
 */
export function parseNarInfo(text: string, storeDir: string): NarInfoFields {
  const bad = (why: string) => new InvalidInputError(`corrupt narinfo: ${why}`)
  if (!text.endsWith('\n')) throw bad('it does not end in a newline')
  const f: Partial<NarInfoFields> & { sigs: string[] } = { sigs: [] }
  let references: string[] | undefined
  for (const line of text.slice(0, -1).split('\n')) {
    const i = line.indexOf(': ')
    if (i <= 0) throw bad(`line ${JSON.stringify(line)} is not "Key: value"`)
    const key = line.slice(0, i)
    const value = line.slice(i + 2)
    switch (key) {
      case 'StorePath':
        f.storePath = value
        break
      case 'URL':
        f.url = value
        break
      case 'Compression':
        f.compression = value
        break
      case 'FileHash':
        f.fileHash = value
        break
      case 'FileSize':
        f.fileSize = count(value, key)
        break
      case 'NarHash':
        f.narHash = value
        break
      case 'NarSize':
        f.narSize = count(value, key)
        break
      case 'References':
        // As Nix: names separated by runs of spaces; a second References line only after an empty first.
        if (references?.length) throw bad('References appears twice')
        references = value.split(' ').filter((r) => r !== '')
        break
      case 'Deriver':
        if (value !== 'unknown-deriver') f.deriver = value
        break
      case 'Sig':
        f.sigs.push(value)
        break
      case 'CA':
        f.ca = value
        break
    }
  }
  if (!f.storePath) throw bad('StorePath is missing')
  if (!f.storePath.startsWith(`${storeDir}/`)) throw bad(`${f.storePath} is not in the store dir ${storeDir}`)
  parseBasename(f.storePath.slice(storeDir.length + 1))
  if (!f.url) throw bad('URL is missing')
  if (!f.narHash) throw bad('NarHash is missing')
  parseSha256(f.narHash)
  if (!f.narSize) throw bad('NarSize is missing or 0')
  for (const r of references ?? []) parseBasename(r)
  return {
    storePath: f.storePath,
    url: f.url,
    compression: f.compression ?? 'bzip2',
    fileHash: f.fileHash,
    fileSize: f.fileSize,
    narHash: f.narHash,
    narSize: f.narSize,
    references: references ?? [],
    deriver: f.deriver,
    sigs: f.sigs,
    ca: f.ca,
  }

  function count(value: string, key: string): number {
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw bad(`${key} ${JSON.stringify(value)} is not a number`)
    return Number(value)
  }
}

/**
 * The PathInfo a narinfo describes, with `root` (its tree once ingested)
 * as the root node, named after the store path. A self-reference stays.
 */
export function pathInfoFromNarInfo(f: NarInfoFields, root: Node, storeDir: string): PathInfo {
  const base = f.storePath.slice(storeDir.length + 1)
  const refs = f.references.map(parseBasename)
  const deriver = f.deriver && parseBasename(f.deriver.replace(/\.drv$/, ''))
  return {
    node: { ...root, name: Buffer.from(base, 'utf8') },
    references: refs.map((r) => r.digest),
    narinfo: {
      narSize: f.narSize,
      narSha256: parseSha256(f.narHash),
      signatures: f.sigs.map(parseSignature),
      referenceNames: refs.map(basename),
      deriver: deriver || undefined,
      ca: f.ca ? parseCa(f.ca) : undefined,
    },
  }
}
