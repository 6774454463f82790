/**
 * A seeded mutator for fuzzing: takes valid inputs (protobuf messages,
 * NARs, narinfo text) and damages them in ways a broken or hostile peer
 * would: byte flips, truncations, insertions, duplicated or dropped fields,
 * overlong varints, length fields that lie. Deterministic: the same seed
 * gives the same cases, so a failure names its seed and case number and
 * `TVIX_FUZZ_SEED=<seed>` replays it. Knows the formats only as far as
 * their framing (protobuf tags and lengths, NAR's 8-byte words), written
 * here rather than taken from the code under test.
 */
import { type DescMessage, fromBinary, toBinary } from '@bufbuild/protobuf'
import { varint } from '../corpus/make-grpc.js'
import { rng } from './trees.js'

/** The run's seed: `TVIX_FUZZ_SEED`, else a fixed one (CI runs the same cases every time). */
export function fuzzSeed(): number {
  const env = process.env.TVIX_FUZZ_SEED
  if (env === undefined || env === '') return 0x5eed16
  const n = Number(env)
  if (!Number.isSafeInteger(n)) throw new Error(`TVIX_FUZZ_SEED=${env} is not an integer`)
  return n
}

/** `ci` cases, or `TVIX_FUZZ_ITERATIONS` (for longer runs by hand). */
export function fuzzIterations(ci: number): number {
  const env = process.env.TVIX_FUZZ_ITERATIONS
  if (env === undefined || env === '') return ci
  const n = Number(env)
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`TVIX_FUZZ_ITERATIONS=${env} is not a positive integer`)
  return n
}

export type Format = 'protobuf' | 'nar' | 'text'

/**
 * `bytes` as the generated @bufbuild/protobuf code (the reference) reads
 * them for `schema`, re-encoded canonically (unknown fields dropped); or
 * why it refuses them. 'overlong tag': it reads a tag as at most 5 bytes,
 * where prost (tvix), as we do, takes up to 10 whose value fits 32 bits, so
 * it is no judge of such a message.
 */
export function referenceBytes(schema: DescMessage, bytes: Uint8Array): Buffer | { refused: string } | 'overlong tag' {
  try {
    return Buffer.from(toBinary(schema, fromBinary(schema, bytes), { writeUnknownFields: false }))
  } catch (e) {
    const why = (e as Error).message
    return /illegal tag: varint overflows uint32/.test(why) ? 'overlong tag' : { refused: why }
  }
}

/** One fuzz case: the input to check, what was done to make it, and how to show it in a failure. */
export interface FuzzCase<T> {
  input: T
  ops: string[]
  shown: string
}

/**
 * Runs `iterations` cases made by `make` through `check` (true: the input
 * was accepted); a failure names the seed, the case, and what was done to
 * the input, so it can be replayed with TVIX_FUZZ_SEED.
 */
export async function fuzzLoop<T>(what: string, seed: number, iterations: number, make: (m: Mutator) => FuzzCase<T>, check: (input: T) => unknown): Promise<{ accepted: number }> {
  const m = new Mutator(seed)
  let accepted = 0
  for (let i = 0; i < iterations; i++) {
    const c = make(m)
    try {
      if (await check(c.input)) accepted++
    } catch (e) {
      const detail = e instanceof Error ? `${e.name}: ${e.message}` : String(e)
      throw new Error(`${what}: case ${i} of seed ${seed} (TVIX_FUZZ_SEED=${fuzzSeed()}; ${c.ops.join('; ')}) on ${c.shown.slice(0, 400)}: ${detail}`, { cause: e })
    }
  }
  return { accepted }
}

/** A mutated input and what was done to it (for the failure message). */
export interface Mutant {
  bytes: Buffer
  ops: string[]
}

/** A top-level protobuf field: where it starts, its tag's end, its payload's span (for a length-delimited one, `lenAt` is its length's start). */
interface PbField {
  start: number
  end: number
  wireType: number
  lenAt?: number
  payload?: [number, number]
}

/** The top-level fields of `buf`, as far as they parse (a tolerant splitter: mutation targets, not a decoder). */
function pbFields(buf: Buffer): PbField[] {
  const out: PbField[] = []
  let pos = 0
  const readVarint = (): bigint | undefined => {
    let v = 0n
    for (let shift = 0n; pos < buf.length && shift < 70n; shift += 7n) {
      const b = buf[pos++]!
      v |= BigInt(b & 0x7f) << shift
      if (b < 0x80) return v
    }
    return undefined
  }
  while (pos < buf.length) {
    const start = pos
    const key = readVarint()
    if (key === undefined) break
    const wireType = Number(key & 7n)
    if (wireType === 0) {
      if (readVarint() === undefined) break
      out.push({ start, end: pos, wireType })
    } else if (wireType === 2) {
      const lenAt = pos
      const len = readVarint()
      if (len === undefined || pos + Number(len) > buf.length) break
      out.push({ start, end: pos + Number(len), wireType, lenAt, payload: [pos, pos + Number(len)] })
      pos += Number(len)
    } else break
  }
  return out
}

/** Length-delimited fields at every depth (a payload that parses as fields is walked too), for nested mutations. */
function pbNested(buf: Buffer, base = 0, depth = 0): PbField[] {
  const out: PbField[] = []
  for (const f of pbFields(buf)) {
    const shifted = { ...f, start: f.start + base, end: f.end + base, lenAt: f.lenAt === undefined ? undefined : f.lenAt + base }
    if (f.payload) shifted.payload = [f.payload[0] + base, f.payload[1] + base]
    out.push(shifted)
    if (f.payload && depth < 4) out.push(...pbNested(buf.subarray(f.payload[0], f.payload[1]), base + f.payload[0], depth + 1))
  }
  return out
}

/** Values that sit on the edges: 0, 1, around 2^31, 2^32, 2^53, 2^63 and 2^64 - 1. */
const EDGES = [0n, 1n, 0x7fn, 0x80n, 0x7fff_ffffn, 0x8000_0000n, 0xffff_ffffn, 0x1_0000_0000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n]

export class Mutator {
  private readonly r: () => number

  constructor(readonly seed: number) {
    this.r = rng(seed)
  }

  int(n: number): number {
    return Math.floor(this.r() * n)
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!
  }

  chance(p: number): boolean {
    return this.r() < p
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = this.int(256)
    return b
  }

  /** One to three mutations of `input`, chosen for its format. */
  mutate(input: Uint8Array, format: Format): Mutant {
    let bytes: Buffer = Buffer.from(input)
    const ops: string[] = []
    const n = 1 + (this.chance(0.7) ? 0 : this.int(3))
    for (let i = 0; i < n; i++) {
      const op = this.pick(format === 'protobuf' ? PB_OPS : format === 'nar' ? NAR_OPS : TEXT_OPS)
      const r = op(this, bytes)
      if (!r) continue
      bytes = r.bytes
      ops.push(r.op)
    }
    if (ops.length === 0) {
      bytes = Buffer.concat([bytes, Buffer.from([0])])
      ops.push('append a zero byte')
    }
    return { bytes, ops }
  }
}

type Op = (m: Mutator, b: Buffer) => { bytes: Buffer; op: string } | undefined

const splice = (b: Buffer, at: number, cut: number, insert: Uint8Array = Buffer.alloc(0)) => Buffer.concat([b.subarray(0, at), insert, b.subarray(at + cut)])

const GENERIC: Op[] = [
  (m, b) => {
    if (b.length === 0) return undefined
    const at = m.int(b.length)
    const x = 1 + m.int(255)
    const out = Buffer.from(b)
    out[at]! ^= x
    return { bytes: out, op: `xor byte ${at} with ${x}` }
  },
  (m, b) => {
    if (b.length === 0) return undefined
    const at = m.int(b.length)
    const bit = m.int(8)
    const out = Buffer.from(b)
    out[at]! ^= 1 << bit
    return { bytes: out, op: `flip bit ${bit} of byte ${at}` }
  },
  (m, b) => {
    const at = m.int(b.length + 1)
    return { bytes: b.subarray(0, at), op: `truncate to ${at} bytes` }
  },
  (m, b) => {
    const at = m.int(b.length + 1)
    const ins = m.bytes(1 + m.int(16))
    return { bytes: splice(b, at, 0, ins), op: `insert ${ins.toString('hex')} at ${at}` }
  },
  (m, b) => {
    if (b.length === 0) return undefined
    const at = m.int(b.length)
    const len = 1 + m.int(Math.min(32, b.length - at))
    return { bytes: splice(b, at, len), op: `delete ${len} bytes at ${at}` }
  },
  (m, b) => {
    if (b.length === 0) return undefined
    const from = m.int(b.length)
    const len = 1 + m.int(Math.min(64, b.length - from))
    const to = m.int(b.length + 1)
    return { bytes: splice(b, to, 0, b.subarray(from, from + len)), op: `copy ${len} bytes from ${from} to ${to}` }
  },
]

const PB_OPS: Op[] = [
  ...GENERIC,
  (m, b) => {
    const fs = pbFields(b)
    if (fs.length === 0) return undefined
    const f = m.pick(fs)
    const to = m.pick([...fs.map((g) => g.start), b.length])
    return { bytes: splice(b, to, 0, b.subarray(f.start, f.end)), op: `duplicate the field at ${f.start} to ${to}` }
  },
  (m, b) => {
    const fs = pbNested(b)
    if (fs.length === 0) return undefined
    const f = m.pick(fs)
    return { bytes: splice(b, f.start, f.end - f.start), op: `drop the field at ${f.start}` }
  },
  (m, b) => {
    const fs = pbNested(b).filter((f) => f.lenAt !== undefined)
    if (fs.length === 0) return undefined
    const f = m.pick(fs)
    const len = f.payload![1] - f.payload![0]
    const lie = m.chance(0.5) ? BigInt(Math.max(0, len + m.pick([-2, -1, 1, 2, 8, 1000]))) : m.pick(EDGES)
    return { bytes: splice(b, f.lenAt!, varint(BigInt(len)).length, varint(lie)), op: `length at ${f.lenAt} says ${lie}, not ${len}` }
  },
  (m, b) => {
    const fs = pbNested(b)
    if (fs.length === 0) return undefined
    const f = m.pick(fs)
    const tagLen = (f.lenAt ?? f.end) - f.start
    // An overlong varint: the same tag padded with continuation bytes, or 11 bytes that overflow 64 bits.
    const long = m.chance(0.5) ? Buffer.concat([Buffer.from([...b.subarray(f.start, f.start + tagLen - 1)].map((x) => x | 0x80)), Buffer.from([b[f.start + tagLen - 1]! | 0x80]), Buffer.from([0x80, 0x80, 0x00])]) : Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
    return { bytes: splice(b, f.start, tagLen, long), op: `tag at ${f.start} as ${long.toString('hex')}` }
  },
  (m, b) => {
    const fs = pbNested(b).filter((f) => f.wireType === 0)
    if (fs.length === 0) return undefined
    const f = m.pick(fs)
    // Rewrite the varint value (after the one-byte tags these messages use).
    const v = m.pick(EDGES)
    return { bytes: splice(b, f.start + 1, f.end - f.start - 1, varint(v)), op: `varint at ${f.start + 1} set to ${v}` }
  },
  (m, b) => {
    const at = m.pick([0, b.length, ...pbFields(b).map((f) => f.start)])
    const wire = m.pick([0, 1, 2, 3, 4, 5, 6, 7])
    const field = m.pick([1, 2, 3, 4, 5, 6, 7, 15, 16, 2047, 536870911])
    const tag = varint(BigInt(field) * 8n + BigInt(wire))
    const body = wire === 0 ? varint(m.pick(EDGES)) : wire === 2 ? Buffer.concat([varint(3n), Buffer.from('abc')]) : wire === 1 ? m.bytes(8) : wire === 5 ? m.bytes(4) : Buffer.alloc(0)
    return { bytes: splice(b, at, 0, Buffer.concat([tag, body])), op: `insert field ${field} of wire type ${wire} at ${at}` }
  },
]

const NAR_OPS: Op[] = [
  ...GENERIC,
  (m, b) => {
    // NAR is 8-byte words: overwrite a word (most are lengths) with an edge value or a nearby one.
    if (b.length < 8) return undefined
    const at = 8 * m.int(b.length >> 3)
    const old = b.readBigUInt64LE(at)
    const v = m.chance(0.5) && old < 2n ** 32n ? BigInt.asUintN(64, old + BigInt(m.pick([-8, -1, 1, 8, 4096]))) : m.pick(EDGES)
    const out = Buffer.from(b)
    out.writeBigUInt64LE(v, at)
    return { bytes: out, op: `word at ${at} set to ${v}` }
  },
  (m, b) => {
    // Move a whole word-aligned span elsewhere on a word boundary: repeated tokens, entries out of place.
    if (b.length < 16) return undefined
    const words = b.length >> 3
    const from = m.int(words)
    const len = 1 + m.int(Math.min(8, words - from))
    const to = m.int(words + 1)
    return { bytes: splice(b, to * 8, 0, b.subarray(from * 8, (from + len) * 8)), op: `copy ${len} words from word ${from} to word ${to}` }
  },
  (m, b) => {
    if (b.length < 8) return undefined
    const at = 8 * m.int(b.length >> 3)
    const len = 8 * (1 + m.int(Math.min(4, (b.length - at) >> 3)))
    return { bytes: splice(b, at, len), op: `delete ${len / 8} words at word ${at / 8}` }
  },
]

const TEXT_OPS: Op[] = [
  ...GENERIC,
  (m, b) => {
    const lines = b.toString('latin1').split('\n')
    const i = m.int(lines.length)
    lines.splice(m.int(lines.length + 1), 0, lines[i]!)
    return { bytes: Buffer.from(lines.join('\n'), 'latin1'), op: `duplicate line ${i}` }
  },
  (m, b) => {
    const lines = b.toString('latin1').split('\n')
    const i = m.int(lines.length)
    lines.splice(i, 1)
    return { bytes: Buffer.from(lines.join('\n'), 'latin1'), op: `drop line ${i}` }
  },
  (m, b) => {
    const lines = b.toString('latin1').split('\n')
    const i = m.int(lines.length)
    const s = m.pick(['\r', '\0', ' ', ':', ': ', 'x', '0', '/..', '\t'])
    lines[i] = m.chance(0.5) ? lines[i] + s : s + lines[i]
    return { bytes: Buffer.from(lines.join('\n'), 'latin1'), op: `line ${i} gets ${JSON.stringify(s)}` }
  },
]
