import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto'
import { InvalidInputError, UsageError } from '../errors.js'
import * as nixbase32 from './nixbase32.js'
import { type PathInfo, type Signature, storePathOf } from './path-info.js'
import { absolute } from './store-path.js'

/*
 * Nix's binary-cache keys and narinfo signatures (Nix 2.8 libstore/crypto.cc,
 * path-info.cc): Ed25519 over the fingerprint of a path, keys written as
 * `name:base64`. Ed25519 is deterministic, so a signature we make equals
 * the one Nix makes for the same path and key.
 */

/** PKCS#8 DER prefix of an Ed25519 private key; the 32-byte seed follows. */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
/** SPKI DER prefix of an Ed25519 public key; the 32 bytes follow. */
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')
const SEED_LEN = 32
const PUBLIC_LEN = 32
const SIGNATURE_LEN = 64

export interface SecretKey {
  name: string
  /** The 32-byte seed (Nix stores it followed by the public key: 64 bytes). */
  seed: Uint8Array
  publicKey: Uint8Array
}

export interface PublicKey {
  name: string
  key: Uint8Array
}

/** A key's name: what Nix's parser allows back (not empty, no `:`), and no whitespace that would not survive a config line. */
export function checkKeyName(name: string): string {
  if (name === '' || /[:\s]/.test(name)) throw new UsageError(`invalid key name ${JSON.stringify(name)}: it must be non-empty, without ':' or whitespace`)
  return name
}

/** Splits `name:base64` as Nix does; `what` names the key in errors. One trailing newline (a file written by `echo`) is allowed. */
function splitKey(text: string, what: string, len: number): { name: string; bytes: Buffer } {
  const s = text.replace(/\r?\n$/, '')
  const colon = s.indexOf(':')
  if (colon <= 0 || colon === s.length - 1) throw new InvalidInputError(`${what} is corrupt: expected 'name:base64'`)
  const name = s.slice(0, colon)
  const b64 = s.slice(colon + 1)
  const bytes = Buffer.from(b64, 'base64')
  // Buffer.from ignores what is not base64; only a canonical encoding round-trips.
  if (bytes.toString('base64') !== b64) throw new InvalidInputError(`${what} '${name}' is corrupt: invalid base64`)
  if (bytes.length !== len) throw new InvalidInputError(`${what} '${name}' is not valid: ${bytes.length} bytes, want ${len}`)
  return { name, bytes }
}

function privateKeyObject(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' })
}

function publicKeyOfSeed(seed: Uint8Array): Buffer {
  const der = createPublicKey(privateKeyObject(seed)).export({ format: 'der', type: 'spki' })
  return der.subarray(SPKI_PREFIX.length)
}

/** A new key pair, as `nix-store --generate-binary-cache-key NAME` makes. */
export function generateSecretKey(name: string): SecretKey {
  checkKeyName(name)
  const { privateKey } = generateKeyPairSync('ed25519')
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length)
  return { name, seed, publicKey: publicKeyOfSeed(seed) }
}

/** Nix's secret key text: `name:base64(seed ‖ public key)`. */
export function parseSecretKey(text: string): SecretKey {
  const { name, bytes } = splitKey(text, 'secret key', SEED_LEN + PUBLIC_LEN)
  const seed = bytes.subarray(0, SEED_LEN)
  const publicKey = bytes.subarray(SEED_LEN)
  // libsodium signs with the stored public half: one that does not belong to the seed makes signatures nobody can verify.
  if (!publicKeyOfSeed(seed).equals(publicKey)) throw new InvalidInputError(`secret key '${name}' is corrupt: its public half does not belong to its seed`)
  return { name, seed, publicKey }
}

export function renderSecretKey(k: SecretKey): string {
  return `${k.name}:${Buffer.concat([k.seed, k.publicKey]).toString('base64')}`
}

/** Nix's public key text: `name:base64(32 bytes)`. */
export function parsePublicKey(text: string): PublicKey {
  const { name, bytes } = splitKey(text, 'public key', PUBLIC_LEN)
  return { name, key: bytes }
}

export function renderPublicKey(k: PublicKey): string {
  return `${k.name}:${Buffer.from(k.key).toString('base64')}`
}

export function publicKeyOf(k: SecretKey): PublicKey {
  return { name: k.name, key: k.publicKey }
}

/** A space-separated list of public keys, as Nix's `trusted-public-keys`. */
export function parsePublicKeys(text: string): PublicKey[] {
  return text
    .split(/\s+/)
    .filter((s) => s !== '')
    .map(parsePublicKey)
}

/**
 * What Nix signs for a path: `1;<path>;sha256:<nixbase32 NAR hash>;<NAR
 * size>;<references as absolute paths, sorted, comma-joined>` (Nix's
 * ValidPathInfo::fingerprint; a path that refers to itself lists itself).
 */
export function fingerprint(info: PathInfo, storeDir: string): string {
  const ni = info.narinfo
  const path = absolute(storePathOf(info), storeDir)
  if (!ni || ni.narSize === 0) throw new InvalidInputError(`cannot calculate the fingerprint of path '${path}': its NAR hash and size are not known`)
  const refs = ni.referenceNames.map((n) => `${storeDir}/${n}`).sort()
  return `1;${path};sha256:${nixbase32.encode(ni.narSha256)};${ni.narSize};${refs.join(',')}`
}

/** The signature Nix's `nix store sign` would add to this path with this key. */
export function signPathInfo(info: PathInfo, key: SecretKey, storeDir: string): Signature {
  const data = sign(null, Buffer.from(fingerprint(info, storeDir), 'utf8'), privateKeyObject(key.seed))
  return { name: key.name, data }
}

/** Whether one of the path's signatures is by one of `keys` and valid (Nix matches keys by name). */
export function hasValidSignature(info: PathInfo, keys: PublicKey[], storeDir: string): boolean {
  return validSignatureCount(info, keys, storeDir) > 0
}

/** How many distinct signatures of the path are valid and by one of `keys`, as Nix's `nix store verify` counts them. */
export function validSignatureCount(info: PathInfo, keys: PublicKey[], storeDir: string): number {
  const sigs = info.narinfo?.signatures ?? []
  if (sigs.length === 0) return 0
  const message = Buffer.from(fingerprint(info, storeDir), 'utf8')
  const seen = new Set<string>()
  return sigs.filter((s) => {
    const text = `${s.name}:${Buffer.from(s.data).toString('base64')}`
    if (seen.has(text)) return false
    seen.add(text)
    return s.data.length === SIGNATURE_LEN && keys.some((k) => k.name === s.name && verify(null, message, publicKeyObject(k.key), s.data))
  }).length
}

function publicKeyObject(key: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, key]), format: 'der', type: 'spki' })
}

/** `info` with `sigs` added (each name and data once, stored ones first), or undefined if it has them all already. */
export function withSignatures(info: PathInfo, sigs: Signature[]): PathInfo | undefined {
  const ni = info.narinfo
  if (!ni) throw new InvalidInputError('this PathInfo has no NAR metadata to sign')
  const key = (s: Signature) => `${s.name}:${Buffer.from(s.data).toString('base64')}`
  const have = new Set(ni.signatures.map(key))
  const added = sigs.filter((s) => !have.has(key(s)) && have.add(key(s)))
  if (added.length === 0) return undefined
  return { ...info, narinfo: { ...ni, signatures: [...ni.signatures, ...added] } }
}
