import { createHash } from 'node:crypto'
import { InvalidInputError, UsageError } from '../errors.js'
import * as nixbase32 from './nixbase32.js'
import { isNixbase32Char } from './nixbase32.js'

export const DEFAULT_STORE_DIR = '/nix/store'
export const DIGEST_LEN = 20
export const HASH_PART_LEN = 32
export const MAX_NAME_LEN = 211

/** A store path without its store dir: the 20-byte digest and the name. */
export interface StorePath {
  digest: Uint8Array
  name: string
}

const NAME_CHAR = /^[A-Za-z0-9+\-._?=]+$/

export function invalidStorePathNameReason(name: string): string | undefined {
  if (name.length === 0) return 'the name is empty'
  if (name.length > MAX_NAME_LEN) return `the name is longer than ${MAX_NAME_LEN} characters`
  if (!NAME_CHAR.test(name)) {
    const bad = [...name].find((c) => !NAME_CHAR.test(c))
    return `the name contains the forbidden character ${JSON.stringify(bad)}`
  }
  return undefined
}

export function validateStorePathName(name: string): string {
  const why = invalidStorePathNameReason(name)
  if (why) throw new InvalidInputError(`invalid store path name ${JSON.stringify(name)}: ${why}`)
  return name
}

/** Parses `<hash>-<name>`; throws InvalidInputError saying what is wrong. */
export function parseBasename(basename: string): StorePath {
  if (basename.length < HASH_PART_LEN + 2 || basename[HASH_PART_LEN] !== '-') {
    throw new InvalidInputError(`invalid store path basename ${JSON.stringify(basename)}: want <32-char hash>-<name>`)
  }
  let digest: Uint8Array
  try {
    digest = nixbase32.decode(basename.slice(0, HASH_PART_LEN))
  } catch (e) {
    throw new InvalidInputError(`invalid store path basename ${JSON.stringify(basename)}: bad hash part`, { cause: e })
  }
  const name = basename.slice(HASH_PART_LEN + 1)
  const why = invalidStorePathNameReason(name)
  if (why) throw new InvalidInputError(`invalid store path basename ${JSON.stringify(basename)}: ${why}`)
  return { digest, name }
}

export function hashPart(p: StorePath): string {
  return nixbase32.encode(p.digest)
}

export function basename(p: StorePath): string {
  return `${hashPart(p)}-${p.name}`
}

export function absolute(p: StorePath, storeDir = DEFAULT_STORE_DIR): string {
  return `${storeDir}/${basename(p)}`
}

/**
 * Splits `<storeDir>/<hash>-<name>[/sub/path]` into the store path and the
 * sub-path components. Accepts a bare basename too, as Nix tools do not, but
 * users paste them.
 */
export function parseStorePathArg(arg: string, storeDir = DEFAULT_STORE_DIR): { path: StorePath; sub: string[] } {
  let rest: string
  if (arg.startsWith(storeDir + '/')) rest = arg.slice(storeDir.length + 1)
  else if (!arg.startsWith('/')) rest = arg
  else throw new UsageError(`path '${arg}' is not in the Nix store`)
  const [base = '', ...sub] = rest.split('/')
  // Nix's wording for each way a store path can be malformed.
  if (base.length < HASH_PART_LEN + 1) throw new UsageError(`'${base}' is too short to be a valid store path`)
  const bad = [...base.slice(0, HASH_PART_LEN)].find((c) => !nixbase32.isNixbase32Char(c.charCodeAt(0)))
  if (bad) throw new UsageError(`store path '${base}' contains illegal base-32 character '${bad}'`)
  let path: StorePath
  try {
    path = parseBasename(base)
  } catch (e) {
    throw new UsageError(`'${base}' is not a valid store path: ${(e as Error).message.replace(/^.*?: /, '')}`)
  }
  return { path, sub: sub.filter((c) => c !== '' && c !== '.') }
}

/** Nix's compression of a SHA-256 to 20 bytes: XOR-fold. */
export function fold20(hash: Uint8Array): Uint8Array {
  const out = new Uint8Array(DIGEST_LEN)
  for (let i = 0; i < hash.length; i++) out[i % DIGEST_LEN] ^= hash[i]!
  return out
}

/**
 * The store path Nix computes from a fingerprint `<type>:sha256:<hex>:<storeDir>:<name>`
 * (SPEC 4.3). `type` already includes any references.
 */
export function makeStorePath(type: string, innerSha256: Uint8Array, name: string, storeDir = DEFAULT_STORE_DIR): StorePath {
  validateStorePathName(name)
  const fp = `${type}:sha256:${Buffer.from(innerSha256).toString('hex')}:${storeDir}:${name}`
  return { digest: fold20(createHash('sha256').update(fp).digest()), name }
}

/** What `nix-store --add` produces: source type, NAR sha256, no references. */
export function makeSourcePath(narSha256: Uint8Array, name: string, storeDir = DEFAULT_STORE_DIR, references: string[] = []): StorePath {
  const type = ['source', ...[...references].sort()].join(':')
  return makeStorePath(type, narSha256, name, storeDir)
}
