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
    this.token(T.magic)
    this.openNode()
  }

  openNode(): void {
    this.token(T.open)
    this.token(T.type)
  }

  /** After this, exactly `size` bytes through contents(), then endContents(). */
  regular(executable: boolean, size: number): void {
    this.token(T.regular)
    if (executable) {
      this.token(T.executable)
      this.token(T.empty)
    }
    this.token(T.contents)
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
    this.raw(ZEROS.subarray(0, padLen(size)))
    this.token(T.close)
  }

  symlink(target: Uint8Array): void {
    this.token(T.symlink)
    this.token(T.target)
    this.token(target)
    this.token(T.close)
  }

  directory(): void {
    this.token(T.directory)
  }

  /** Opens `entry ( name <name> node`, followed by openNode() of the child. */
  entry(name: Uint8Array): void {
    this.token(T.entry)
    this.token(T.open)
    this.token(T.name)
    this.token(name)
    this.token(T.node)
    this.openNode()
  }

  /** Closes a directory node. */
  endDirectory(): void {
    this.token(T.close)
  }

  /** Closes an entry opened by entry(). */
  endEntry(): void {
    this.token(T.close)
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
    this.raw(ZEROS.subarray(0, padLen(bytes.length)))
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
