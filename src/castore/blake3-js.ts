/**
 * BLAKE3 (hash mode, 32-byte output) in plain JavaScript, for the few small
 * inputs a short command hashes (a Directory, a small file): loading the
 * native binding costs a cold start several milliseconds, more than this
 * takes on some kilobytes. Large inputs and streams use the native one
 * (digest.ts decides). Follows the reference implementation's structure:
 * 1 KiB chunks of 64-byte blocks, chunk chaining values merged into a tree.
 */
const IV = Uint32Array.of(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19)
const CHUNK_START = 1
const CHUNK_END = 2
const PARENT = 4
const ROOT = 8
const CHUNK_LEN = 1024
const BLOCK_LEN = 64

const block = new Uint32Array(16)

/**
 * The compression function; the first 8 output words (a chaining value, or
 * the root's 32 bytes) go to `out`. State and message in locals, the rounds
 * written out: a short command runs this interpreted, where locals are cheap
 * and typed-array accesses are not.
 */
function compress(cv: Uint32Array, m: Uint32Array, counter: number, blockLen: number, flags: number, out: Uint32Array): void {
  let v0 = cv[0]!, v1 = cv[1]!, v2 = cv[2]!, v3 = cv[3]!, v4 = cv[4]!, v5 = cv[5]!, v6 = cv[6]!, v7 = cv[7]!
  let v8 = IV[0]!, v9 = IV[1]!, v10 = IV[2]!, v11 = IV[3]!
  // The block counter's high word stays 0: inputs here are far below 2^32 chunks.
  let v12 = counter | 0, v13 = 0, v14 = blockLen | 0, v15 = flags | 0
  let m0 = m[0]!, m1 = m[1]!, m2 = m[2]!, m3 = m[3]!, m4 = m[4]!, m5 = m[5]!, m6 = m[6]!, m7 = m[7]!
  let m8 = m[8]!, m9 = m[9]!, m10 = m[10]!, m11 = m[11]!, m12 = m[12]!, m13 = m[13]!, m14 = m[14]!, m15 = m[15]!
  for (let r = 0; r < 7; r++) {
    // Columns, then diagonals: G(a, b, c, d, x, y) eight times.
    v0 = (v0 + v4 + m0) | 0; v12 ^= v0; v12 = (v12 >>> 16) | (v12 << 16); v8 = (v8 + v12) | 0; v4 ^= v8; v4 = (v4 >>> 12) | (v4 << 20)
    v0 = (v0 + v4 + m1) | 0; v12 ^= v0; v12 = (v12 >>> 8) | (v12 << 24); v8 = (v8 + v12) | 0; v4 ^= v8; v4 = (v4 >>> 7) | (v4 << 25)
    v1 = (v1 + v5 + m2) | 0; v13 ^= v1; v13 = (v13 >>> 16) | (v13 << 16); v9 = (v9 + v13) | 0; v5 ^= v9; v5 = (v5 >>> 12) | (v5 << 20)
    v1 = (v1 + v5 + m3) | 0; v13 ^= v1; v13 = (v13 >>> 8) | (v13 << 24); v9 = (v9 + v13) | 0; v5 ^= v9; v5 = (v5 >>> 7) | (v5 << 25)
    v2 = (v2 + v6 + m4) | 0; v14 ^= v2; v14 = (v14 >>> 16) | (v14 << 16); v10 = (v10 + v14) | 0; v6 ^= v10; v6 = (v6 >>> 12) | (v6 << 20)
    v2 = (v2 + v6 + m5) | 0; v14 ^= v2; v14 = (v14 >>> 8) | (v14 << 24); v10 = (v10 + v14) | 0; v6 ^= v10; v6 = (v6 >>> 7) | (v6 << 25)
    v3 = (v3 + v7 + m6) | 0; v15 ^= v3; v15 = (v15 >>> 16) | (v15 << 16); v11 = (v11 + v15) | 0; v7 ^= v11; v7 = (v7 >>> 12) | (v7 << 20)
    v3 = (v3 + v7 + m7) | 0; v15 ^= v3; v15 = (v15 >>> 8) | (v15 << 24); v11 = (v11 + v15) | 0; v7 ^= v11; v7 = (v7 >>> 7) | (v7 << 25)
    v0 = (v0 + v5 + m8) | 0; v15 ^= v0; v15 = (v15 >>> 16) | (v15 << 16); v10 = (v10 + v15) | 0; v5 ^= v10; v5 = (v5 >>> 12) | (v5 << 20)
    v0 = (v0 + v5 + m9) | 0; v15 ^= v0; v15 = (v15 >>> 8) | (v15 << 24); v10 = (v10 + v15) | 0; v5 ^= v10; v5 = (v5 >>> 7) | (v5 << 25)
    v1 = (v1 + v6 + m10) | 0; v12 ^= v1; v12 = (v12 >>> 16) | (v12 << 16); v11 = (v11 + v12) | 0; v6 ^= v11; v6 = (v6 >>> 12) | (v6 << 20)
    v1 = (v1 + v6 + m11) | 0; v12 ^= v1; v12 = (v12 >>> 8) | (v12 << 24); v11 = (v11 + v12) | 0; v6 ^= v11; v6 = (v6 >>> 7) | (v6 << 25)
    v2 = (v2 + v7 + m12) | 0; v13 ^= v2; v13 = (v13 >>> 16) | (v13 << 16); v8 = (v8 + v13) | 0; v7 ^= v8; v7 = (v7 >>> 12) | (v7 << 20)
    v2 = (v2 + v7 + m13) | 0; v13 ^= v2; v13 = (v13 >>> 8) | (v13 << 24); v8 = (v8 + v13) | 0; v7 ^= v8; v7 = (v7 >>> 7) | (v7 << 25)
    v3 = (v3 + v4 + m14) | 0; v14 ^= v3; v14 = (v14 >>> 16) | (v14 << 16); v9 = (v9 + v14) | 0; v4 ^= v9; v4 = (v4 >>> 12) | (v4 << 20)
    v3 = (v3 + v4 + m15) | 0; v14 ^= v3; v14 = (v14 >>> 8) | (v14 << 24); v9 = (v9 + v14) | 0; v4 ^= v9; v4 = (v4 >>> 7) | (v4 << 25)
    // The message permutation [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8] before the next round.
    const t0 = m0, t1 = m1
    m0 = m2; m2 = m3; m3 = m10; m10 = m12; m12 = m9; m9 = m11; m11 = m5; m5 = t0
    m1 = m6; m6 = m4; m4 = m7; m7 = m13; m13 = m14; m14 = m15; m15 = m8; m8 = t1
  }
  out[0] = v0 ^ v8; out[1] = v1 ^ v9; out[2] = v2 ^ v10; out[3] = v3 ^ v11
  out[4] = v4 ^ v12; out[5] = v5 ^ v13; out[6] = v6 ^ v14; out[7] = v7 ^ v15
}

/** Little-endian words of `len` bytes at `off`, zero-padded to a block. */
function loadBlock(data: Uint8Array, off: number, len: number): Uint32Array {
  block.fill(0)
  for (let i = 0; i < len; i++) block[i >> 2]! |= data[off + i]! << ((i & 3) * 8)
  return block
}

/** The chaining value of chunk `index` (or, with ROOT in `root`, the hash of a one-chunk input). */
function chunk(data: Uint8Array, index: number, root: number): Uint32Array {
  const start = index * CHUNK_LEN
  const end = Math.min(start + CHUNK_LEN, data.length)
  const cv = IV.slice()
  let flags = CHUNK_START
  let off = start
  for (; end - off > BLOCK_LEN; off += BLOCK_LEN) {
    compress(cv, loadBlock(data, off, BLOCK_LEN), index, BLOCK_LEN, flags, cv)
    flags = 0
  }
  compress(cv, loadBlock(data, off, end - off), index, end - off, flags | CHUNK_END | root, cv)
  return cv
}

function parent(left: Uint32Array, right: Uint32Array, root: number): Uint32Array {
  const m = new Uint32Array(16)
  m.set(left)
  m.set(right, 8)
  const out = new Uint32Array(8)
  compress(IV, m, 0, BLOCK_LEN, PARENT | root, out)
  return out
}

/** BLAKE3 of `data`: 32 bytes. */
export function blake3Js(data: Uint8Array): Uint8Array {
  const chunks = Math.max(1, Math.ceil(data.length / CHUNK_LEN))
  let cv: Uint32Array
  if (chunks === 1) {
    cv = chunk(data, 0, ROOT)
  } else {
    // Every chunk but the last joins the stack, merged as the tree's left subtrees complete.
    const stack: Uint32Array[] = []
    for (let i = 0; i < chunks - 1; i++) {
      let c = chunk(data, i, 0)
      for (let total = i + 1; (total & 1) === 0; total >>= 1) c = parent(stack.pop()!, c, 0)
      stack.push(c)
    }
    cv = chunk(data, chunks - 1, 0)
    while (stack.length > 1) cv = parent(stack.pop()!, cv, 0)
    cv = parent(stack.pop()!, cv, ROOT)
  }
  const out = Buffer.allocUnsafe(32)
  for (let i = 0; i < 8; i++) out.writeUInt32LE(cv[i]!, i * 4)
  return out
}
