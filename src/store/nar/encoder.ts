/**
 * NAR serialisation (SPEC 5). Every token is `u64le(len) ‖ bytes ‖ zero
 * padding to 8`. The encoder coalesces the many small tokens into one
 * buffer and hands the sink large chunks, so hashing or writing a NAR costs
 * a few calls per file instead of a dozen.
 */
export type NarSink = (chunk: Uint8Array) => void

const FLUSH_AT = 64 * 1024
const ZEROS = new Uint8Array(8)

export function padLen(n: number): number {
  return (8 - (n % 8)) % 8
}

const enc = (s: string) => new TextEncoder().encode(s)
export const T = {
  magic: enc('nix-archive-1'),
  open: enc('('),
  close: enc(')'),
  type: enc('type'),
  regular: enc('regular'),
  executable: enc('executable'),
  empty: new Uint8Array(0),
  contents: enc('contents'),
  symlink: enc('symlink'),
  target: enc('target'),
  directory: enc('directory'),
  entry: enc('entry'),
  name: enc('name'),
  node: enc('node'),
} as const

/** Tokens as the NAR has them (length, bytes, zero padding), joined: the encoder writes each run of constant tokens with one copy. */
function tokens(...ts: Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = []
  for (const t of ts) {
    const len = new Uint8Array(8)
    new DataView(len.buffer).setUint32(0, t.length, true)
    parts.push(len, t, ZEROS.subarray(0, padLen(t.length)))
  }
  return Buffer.concat(parts)
}
const OPEN_NODE = tokens(T.open, T.type)
const BEGIN = tokens(T.magic, T.open, T.type)
const REGULAR = tokens(T.regular, T.contents)
const EXECUTABLE = tokens(T.regular, T.executable, T.empty, T.contents)
const SYMLINK = tokens(T.symlink, T.target)
const DIRECTORY = tokens(T.directory)
const ENTRY = tokens(T.entry, T.open, T.name)
const NODE = tokens(T.node, T.open, T.type)
const CLOSE = tokens(T.close)
/** Zero padding of k bytes, then `)`: the end of a file's contents. */
const PAD_CLOSE = Array.from({ length: 8 }, (_, k) => Buffer.concat([ZEROS.subarray(0, k), CLOSE]))
/** Zero padding of k bytes. */
const PAD = Array.from({ length: 8 }, (_, k) => ZEROS.subarray(0, k))

export interface NarEncoderOptions {
  /** Bytes gathered before they go to the sink in one piece (default 64 KiB). */
  flushAt?: number
  /** File contents shorter than this are copied into those pieces, longer ones go to the sink as they are (default 4 KiB). */
  copyBelow?: number
  /**
   * When a piece the sink got may be filled again (default never: the sink
   * may keep it, and each piece is fresh memory). 'sink': once the sink
   * returns (it hashed or copied it); 'reclaim': once the owner calls
   * reclaim(). Memory touched for the first time costs more here than
   * hashing it (page faults), so a NAR of any size then fills a few
   * buffers over and over.
   */
  reuse?: 'sink' | 'reclaim'
}

export class NarEncoder {
  private readonly flushAt: number
  private readonly copyBelow: number
  private readonly reuse: NarEncoderOptions['reuse']
  private buf: Buffer
  private pos = 0
  /** Pieces the sink got that are not given back yet ('reclaim'), and those given back, to be filled again. */
  private readonly lent: Buffer[] = []
  private readonly spare: Buffer[] = []
  /** Bytes emitted so far (flushed or not). */
  size = 0

  constructor(
    private readonly sink: NarSink,
    opts: NarEncoderOptions = {},
  ) {
    this.flushAt = opts.flushAt ?? FLUSH_AT
    this.copyBelow = Math.min(opts.copyBelow ?? 4096, this.flushAt)
    this.reuse = opts.reuse
    this.buf = Buffer.allocUnsafe(this.flushAt + 1024)
  }

  /** Magic and the opening of the root node. */
  begin(): void {
    this.raw(BEGIN)
  }

  openNode(): void {
    this.raw(OPEN_NODE)
  }

  /** After this, exactly `size` bytes through contents(), then endContents(). */
  regular(executable: boolean, size: number): void {
    this.raw(executable ? EXECUTABLE : REGULAR)
    this.u64(size)
  }

  contents(chunk: Uint8Array): void {
    if (chunk.length < this.copyBelow) {
      if (this.pos + chunk.length > this.buf.length) this.flush()
      this.buf.set(chunk, this.pos)
      this.pos += chunk.length
      this.size += chunk.length
      if (this.pos >= this.flushAt) this.flush()
      return
    }
    this.flush()
    this.size += chunk.length
    this.sink(chunk)
  }

  /**
   * Contents of `size` bytes (less than copyBelow) that `fill` writes
   * straight into the buffer at the offset it is given, with room for
   * size + 1 there. If it returns false nothing is counted or emitted
   * (the caller then gives the contents another way).
   */
  contentsInPlace(size: number, fill: (buf: Buffer, at: number) => boolean): boolean {
    if (size >= this.copyBelow) return false
    if (this.pos + size + 1 > this.buf.length) this.flush()
    if (!fill(this.buf, this.pos)) return false
    this.pos += size
    this.size += size
    if (this.pos >= this.flushAt) this.flush()
    return true
  }

  /** Counts `n` content bytes as emitted without emitting them: the consumer does not want them (a NAR rendered from an offset). */
  skipContents(n: number): void {
    this.flush()
    this.size += n
  }

  endContents(size: number): void {
    this.raw(PAD_CLOSE[padLen(size)]!)
  }

  symlink(target: Uint8Array): void {
    this.raw(SYMLINK)
    this.token(target)
    this.raw(CLOSE)
  }

  directory(): void {
    this.raw(DIRECTORY)
  }

  /** Opens `entry ( name <name> node`, followed by openNode() of the child. */
  entry(name: Uint8Array): void {
    this.raw(ENTRY)
    this.token(name)
    this.raw(NODE)
  }

  /** Closes a directory node. */
  endDirectory(): void {
    this.raw(CLOSE)
  }

  /** Closes an entry opened by entry(). */
  endEntry(): void {
    this.raw(CLOSE)
  }

  flush(): void {
    if (this.pos === 0) return
    // The sink gets the filled part (no copy), and we another buffer: a fresh one unless one was given back.
    const full = this.buf.subarray(0, this.pos)
    if (this.reuse) this.lent.push(this.buf)
    this.buf = this.spare.pop() ?? Buffer.allocUnsafe(this.buf.length)
    this.pos = 0
    this.sink(full)
    if (this.reuse === 'sink') this.reclaim()
  }

  /** With reuse 'reclaim': whoever the pieces went to is done with every one flushed so far, so they may be filled again. */
  reclaim(): void {
    for (const b of this.lent.splice(0)) this.spare.push(b)
  }

  private token(bytes: Uint8Array): void {
    this.u64(bytes.length)
    this.raw(bytes)
    this.raw(PAD[padLen(bytes.length)]!)
  }

  private u64(n: number): void {
    if (this.pos + 8 > this.buf.length) this.flush()
    this.buf.writeUInt32LE(n >>> 0, this.pos)
    this.buf.writeUInt32LE(Math.floor(n / 0x1_0000_0000), this.pos + 4)
    this.pos += 8
    this.size += 8
  }

  private raw(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    if (this.pos + bytes.length > this.buf.length) {
      this.flush()
      if (bytes.length > this.buf.length) {
        this.size += bytes.length
        this.sink(bytes)
        return
      }
    }
    this.buf.set(bytes, this.pos)
    this.pos += bytes.length
    this.size += bytes.length
  }
}
