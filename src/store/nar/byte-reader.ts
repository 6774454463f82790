import { InvalidInputError } from '../../errors.js'

const EMPTY = new Uint8Array(0)
/** Thrown by take() inside a step when the buffer runs short (never escapes now()). */
const MORE = Symbol('more bytes needed')

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

  /**
   * Runs `step` on the bytes buffered already, reading them with take():
   * its result, or undefined, with nothing consumed, if it wanted more than
   * is buffered. A parser's steps between awaits cost no promise then.
   */
  now<T>(step: () => T): T | undefined {
    const off = this.off
    const consumed = this.consumed
    try {
      return step()
    } catch (e) {
      if (e !== MORE) throw e
      this.off = off
      this.consumed = consumed
      return undefined
    }
  }

  /** `step` (see now()) once enough is buffered: what it did not consume is kept (copied: the source may reuse its buffer) with the next pieces. */
  async more<T>(step: () => T): Promise<T> {
    for (;;) {
      // Copied before the next piece is asked for: a source that reuses its buffers may be filling this one again.
      const tail = this.off < this.buf.length ? Buffer.from(this.buf.subarray(this.off)) : undefined
      if (!(await this.fill())) throw truncated()
      if (tail) this.buf = Buffer.concat([tail, this.buf])
      const done = this.now(step)
      if (done !== undefined) return done
    }
  }

  /** Inside a step: exactly `n` buffered bytes (a view, valid until the next read), else the step is run again with more. */
  take(n: number): Uint8Array {
    if (this.buf.length - this.off < n) throw MORE
    const out = this.buf.subarray(this.off, this.off + n)
    this.off += n
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
