/**
 * Buffers of one size kept between uses, at most `keep` of them: a fresh
 * large buffer costs a page fault per 4 KiB on first touch (and GC), which
 * for a stream of 1 MiB reads was ~10 % of an import's CPU. Whoever takes
 * a buffer gives it back only once nothing can touch it any more (no read
 * or write in flight, no view handed on still valid).
 */
export class BufferPool {
  private readonly free: Buffer[] = []

  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.size)
  }

  give(buf: Buffer): void {
    if (this.free.length < this.keep && buf.length === this.size) this.free.push(buf)
  }
}
