import { InvalidInputError } from '../../errors.js'

const EMPTY = new Uint8Array(0)

/**
 * Pulls exact byte counts out of an async chunk source. The one place
 * where NAR input is buffered; `onChunk` sees every raw chunk pulled, which
 * is how the NAR hash and size are computed while parsing.
 */
export class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>
  private buf: Uint8Array = EMPTY
  private off = 0
  /** Bytes handed to the parser so far. */
  consumed = 0

  constructor(
    src: AsyncIterable<Uint8Array>,
    private readonly onChunk?: (chunk: Uint8Array) => void,
  ) {
    this.it = src[Symbol.asyncIterator]()
  }

  private async fill(): Promise<boolean> {
    for (;;) {
      const r = await this.it.next()
      if (r.done) return false
      if (r.value.length === 0) continue
      this.onChunk?.(r.value)
      this.buf = r.value
      this.off = 0
      return true
    }
  }

  /** Exactly `n` bytes; the result is only valid until the next read. */
  async read(n: number): Promise<Uint8Array> {
    const avail = this.buf.length - this.off
    if (avail >= n) {
      const out = this.buf.subarray(this.off, this.off + n)
      this.off += n
      this.consumed += n
      return out
    }
    const out = new Uint8Array(n)
    let got = 0
    while (got < n) {
      if (this.off === this.buf.length && !(await this.fill())) throw truncated()
      const take = Math.min(n - got, this.buf.length - this.off)
      out.set(this.buf.subarray(this.off, this.off + take), got)
      this.off += take
      got += take
    }
    this.consumed += n
    return out
  }

  /** Streams the next `n` bytes as they arrive, without copying. */
  async *stream(n: number): AsyncGenerator<Uint8Array> {
    let left = n
    while (left > 0) {
      if (this.off === this.buf.length && !(await this.fill())) throw truncated()
      const take = Math.min(left, this.buf.length - this.off)
      const out = this.buf.subarray(this.off, this.off + take)
      this.off += take
      this.consumed += take
      left -= take
      yield out
    }
  }

  async atEnd(): Promise<boolean> {
    while (this.off === this.buf.length) {
      if (!(await this.fill())) return true
    }
    return false
  }

  /** Ends the source early (e.g. after an error) so files and sockets close. */
  async cancel(): Promise<void> {
    await this.it.return?.()
  }
}

function truncated(): InvalidInputError {
  return new InvalidInputError('invalid NAR: unexpected end of input (truncated)')
}
