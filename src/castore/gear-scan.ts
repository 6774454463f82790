/**
 * The chunker's inner loop (the Gear rolling hash, chunker.ts) as a tiny
 * WebAssembly function: ~2 GB/s where the same loop in JS runs ~1 GB/s
 * (bounds and type checks per byte), a tenth of a large import's CPU
 * saved. No dependency: the module is 100-odd bytes, assembled below from
 * the listing in the comment; WebAssembly is part of every Node.
 *
 *   (memory (export "m") PAGES)              ;; [0, 1024): the Gear table, i32 each
 *   (global $fp (export "fp") (mut i32) (i32.const 0))
 *   (func (export "scan") (param $i i32) (param $stop i32) (param $fp i32) (param $mask i32) (result i32)
 *     (block $out (loop $next
 *       (br_if $out (i32.ge_u (local.get $i) (local.get $stop)))
 *       (local.set $fp (i32.add (i32.shl (local.get $fp) (i32.const 1))
 *                               (i32.load (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
 *       (local.set $i (i32.add (local.get $i) (i32.const 1)))
 *       (if (i32.eqz (i32.and (local.get $fp) (local.get $mask)))
 *         (then (global.set $fp (local.get $fp)) (return (local.get $i))))
 *       (br $next)))
 *     (global.set $fp (local.get $fp))
 *     (i32.const -1))
 *
 * scan() runs the hash over memory [i, stop) and returns the address after
 * the first byte where `fp & mask` is 0, or -1; the hash is left in fp.
 */

const GEAR_BYTES = 256 * 4

/** Unsigned LEB128. */
function leb(n: number): number[] {
  const out: number[] = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n) b |= 0x80
    out.push(b)
  } while (n)
  return out
}

const section = (id: number, items: number[][]) => {
  const body = [...leb(items.length), ...items.flat()]
  return [id, ...leb(body.length), ...body]
}
const name = (s: string) => [...leb(s.length), ...Buffer.from(s)]

function assemble(pages: number): Uint8Array<ArrayBuffer> {
  const [I, STOP, FP, MASK] = [0, 1, 2, 3]
  const [I32, FUNC, MEMORY, GLOBAL] = [0x7f, 0x00, 0x02, 0x03]
  const [block, loop, br, brIf, ifThen, end, ret] = [0x02, 0x03, 0x0c, 0x0d, 0x04, 0x0b, 0x0f]
  const [get, set, setGlobal, i32const] = [0x20, 0x21, 0x24, 0x41]
  const [load, load8u, eqz, geU, add, and, shl] = [0x28, 0x2d, 0x45, 0x4f, 0x6a, 0x71, 0x74]
  const code = [
    block, 0x40, loop, 0x40,
    get, I, get, STOP, geU, brIf, 1,
    get, FP, i32const, 1, shl,
    get, I, load8u, 0, 0, i32const, 2, shl, load, 2, 0, add, set, FP,
    get, I, i32const, 1, add, set, I,
    get, FP, get, MASK, and, eqz, ifThen, 0x40, get, FP, setGlobal, 0, get, I, ret, end,
    br, 0,
    end, end,
    get, FP, setGlobal, 0, i32const, 0x7f, // -1
    end,
  ]
  const body = [0x00, ...code] // no locals beyond the parameters
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [[0x60, 4, I32, I32, I32, I32, 1, I32]]),
    ...section(3, [[0]]),
    ...section(5, [[0x00, ...leb(pages)]]),
    ...section(6, [[I32, 1, i32const, 0, end]]),
    ...section(7, [
      [...name('m'), MEMORY, 0],
      [...name('scan'), FUNC, 0],
      [...name('fp'), GLOBAL, 0],
    ]),
    ...section(10, [[...leb(body.length), ...body]]),
  ])
}

interface Exports {
  m: WebAssembly.Memory
  fp: WebAssembly.Global
  scan(i: number, stop: number, fp: number, mask: number): number
}

const modules = new Map<number, WebAssembly.Module>()

/**
 * One scanner's own memory: the Gear table, then `capacity` bytes of data
 * (`bytes`) that scan() reads by offset. One per chunk stream, since the
 * bytes handed on are views of it.
 */
export class GearScanner {
  readonly bytes: Buffer
  private readonly exports: Exports

  constructor(gear: Int32Array, capacity: number) {
    const pages = Math.ceil((GEAR_BYTES + capacity) / 65536)
    let mod = modules.get(pages)
    if (!mod) modules.set(pages, (mod = new WebAssembly.Module(assemble(pages))))
    this.exports = new WebAssembly.Instance(mod, {}).exports as unknown as Exports
    const mem = this.exports.m.buffer
    new Int32Array(mem, 0, 256).set(gear)
    this.bytes = Buffer.from(mem, GEAR_BYTES, capacity)
  }

  /**
   * Runs the hash from `fp` over bytes [from, to): the offset after the first
   * byte where `fp & mask` is 0, or -1 (the hash so far is then `fp()`).
   */
  scan(from: number, to: number, fp: number, mask: number): number {
    const r = this.exports.scan(GEAR_BYTES + from, GEAR_BYTES + to, fp, mask)
    return r < 0 ? r : r - GEAR_BYTES
  }

  fp(): number {
    return this.exports.fp.value as number
  }
}
