import { createRequire } from 'node:module'
import { InvalidInputError } from '../errors.js'
import { blake3Js } from './blake3-js.js'

type BlakeBinding = typeof import('@napi-rs/blake-hash')

/**
 * The native BLAKE3 binding. Its generic loader asks process.report for the
 * libc (~5 ms of every start-up); npm installs the -gnu package only on
 * glibc systems, so try it first and fall back to the loader elsewhere.
 */
function loadBlake(): BlakeBinding {
  const require = createRequire(import.meta.url)
  try {
    return require((bindingFile = require.resolve(`@napi-rs/blake-hash-${process.platform}-${process.arch}-gnu`))) as BlakeBinding
  } catch {
    return require((bindingFile = require.resolve('@napi-rs/blake-hash'))) as BlakeBinding
  }
}
let bindingFile: string | undefined
let binding: BlakeBinding | undefined
/** Loaded on first use: a command that reads only PathInfos (narinfo, path-info) never opens it. */
const blake = (): BlakeBinding => (binding ??= loadBlake())

/** The module file of the native binding, for a worker thread to load the same (check-thread.ts). */
export function blake3ModulePath(): string {
  blake()
  return bindingFile!
}

/** BLAKE3 digests are 32 bytes; everything in the castore is keyed by one. */
export const B3_LEN = 32

export type B3Digest = Uint8Array

/** A Buffer view of the same memory (the native binding takes Buffers). */
function buf(d: Uint8Array): Buffer {
  return Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength)
}

/**
 * Bytes hashed in JavaScript before the native binding is loaded: a short
 * command (ls, cat of a small file) checks a Directory or two, a bundle's
 * index (~1.3 KiB for a bundle of 24 blobs) and a small blob, in less time
 * than loading the binding takes (4 KiB cold in JavaScript: ~2 ms; the
 * binding: 5-9 ms here); past this, the binding loads and does all further
 * hashing.
 */
let jsBudget = 4096

export function b3(data: Uint8Array): B3Digest {
  if (binding === undefined && data.length <= jsBudget) {
    jsBudget -= data.length
    return blake3Js(data)
  }
  // The reused hasher and a hex digest, as b3Matches: the binding's blake3() returns an external
  // buffer with a finaliser, which cost a walk of small files ~2 µs per file more.
  const h = reusedHasher()
  h.reset()
  h.update(buf(data))
  return Buffer.from(h.digest('hex'), 'hex')
}

let checker: InstanceType<BlakeBinding['Blake3Hasher']> | undefined
/** One native hasher for b3 and b3Matches (both synchronous, so never in use twice at once). */
const reusedHasher = () => (checker ??= new (blake().Blake3Hasher)())

/**
 * Whether `data`'s BLAKE3 is `digest`: the check every read makes. One
 * reused hasher and a hex digest, not b3(): a Buffer the binding returns
 * is an external buffer with a finaliser, which cost more CPU than hashing
 * a small file (5.4 against 3.1 µs per 2 KiB file; 14.6 against 11.2 µs
 * per 64 KiB chunk).
 */
export function b3Matches(data: Uint8Array, digest: Uint8Array): boolean {
  if (binding === undefined && data.length <= jsBudget) return bytesEqual(b3(data), digest)
  const h = reusedHasher()
  h.reset()
  h.update(buf(data))
  return digest.length === B3_LEN && h.digest('hex') === toHex(digest)
}

/** Incremental BLAKE3 (native, N-API). */
export function b3Hasher(): { update(d: Uint8Array): void; digest(): B3Digest } {
  const h = new (blake().Blake3Hasher)()
  return {
    update: (d) => void h.update(buf(d)),
    digest: () => h.digestBuffer(),
  }
}

/**
 * `d` if it has `len` bytes, else an InvalidInputError naming `what`: a
 * malformed key is bad input in every backend, never an absent object.
 */
export function requireDigestLength<D extends Uint8Array>(d: D, len = B3_LEN, what = 'digest'): D {
  if (d.length !== len) throw new InvalidInputError(`${what} has ${d.length} bytes, want ${len}`)
  return d
}

export function toHex(d: Uint8Array): string {
  return buf(d).toString('hex')
}

/** A digest as a map key held in bulk (one per file of an import): its bytes as latin1, half the size of hex. */
export function binaryKey(d: Uint8Array): string {
  return buf(d).toString('latin1')
}

export function fromBinaryKey(key: string): Buffer {
  return Buffer.from(key, 'latin1')
}

/** tvix's display form, e.g. `b3:rxNJufX5oaagQE3qNtzJSZvLJcmtwRK3zJqTyuQfMmI=`. */
export function b3Display(d: B3Digest): string {
  return 'b3:' + buf(d).toString('base64')
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}

/** Unsigned bytewise order, the order of Directory entries and NAR entries. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b)
}

/** The digest of the empty string: both the empty blob and the empty Directory (written out, so loading this module loads no BLAKE3). */
export const EMPTY_DIGEST: B3Digest = Buffer.from('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262', 'hex')
