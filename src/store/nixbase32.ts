import { InvalidInputError } from '../errors.js'

/** Nix's base-32 alphabet: no e, o, t, u. */
const ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz'
const VALUE = new Int8Array(128).fill(-1)
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i

export function encodedLen(byteLen: number): number {
  return Math.ceil((byteLen * 8) / 5)
}

/**
 * Nix's encoding reads the input as a little-endian bit string and emits
 * the 5-bit groups from the most significant end, so the output reads
 * "backwards" compared with RFC 4648 base32.
 */
export function encode(bytes: Uint8Array): string {
  const len = encodedLen(bytes.length)
  let out = ''
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5
    const i = b >>> 3
    const j = b & 7
    const lo = bytes[i]! >> j
    const hi = i + 1 < bytes.length ? bytes[i + 1]! << (8 - j) : 0
    out += ALPHABET[(lo | hi) & 0x1f]
  }
  return out
}

export function decode(s: string): Uint8Array {
  const byteLen = Math.floor((s.length * 5) / 8)
  if (encodedLen(byteLen) !== s.length) throw new InvalidInputError(`invalid nixbase32 length ${s.length}`)
  const out = new Uint8Array(byteLen)
  for (let n = 0; n < s.length; n++) {
    const code = s.charCodeAt(s.length - 1 - n)
    const v = code < 128 ? VALUE[code]! : -1
    if (v < 0) throw new InvalidInputError(`invalid nixbase32 character ${JSON.stringify(s[s.length - 1 - n])}`)
    const b = n * 5
    const i = b >>> 3
    const j = b & 7
    out[i] |= (v << j) & 0xff
    const carry = v >> (8 - j)
    if (carry !== 0) {
      if (i + 1 >= byteLen) throw new InvalidInputError('nixbase32 string has bits beyond its length')
      out[i + 1] |= carry
    }
  }
  return out
}

export function isNixbase32Char(code: number): boolean {
  return code < 128 && VALUE[code]! >= 0
}
