/**
 * Pieces handed from a producer to one `for await` consumer one at a
 * time: `give` resolves once the consumer has taken the piece, so the
 * producer never runs ahead by more than one piece (flat memory). How a
 * stream read from the far store is written to the near one as it passes.
 */
export class Handover<T> implements AsyncIterable<T> {
  private offered: { value: T; taken: () => void; refused: (e: Error) => void } | undefined
  private wake: (() => void) | undefined
  private ended = false
  private failure: { e: unknown } | undefined
  /** Set when the consumer stopped early: gives fail instead of waiting forever. */
  private gone = false

  /** Hands `value` over; resolves when the consumer took it, throws if the consumer has gone. */
  give(value: T): Promise<void> {
    if (this.gone) return Promise.reject(gone())
    return new Promise((taken, refused) => {
      this.offered = { value, taken, refused }
      this.poke()
    })
  }

  /**
   * The consumer will take nothing more (it failed, perhaps before it
   * began to read): a give waiting, and every later one, throws.
   */
  abandon(): void {
    this.gone = true
    this.offered?.refused(gone())
    this.offered = undefined
  }

  /** No more pieces: the consumer's loop ends (or throws `failure`). */
  end(failure?: { e: unknown }): void {
    this.ended = true
    this.failure = failure
    this.poke()
  }

  private poke(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    try {
      for (;;) {
        while (!this.offered && !this.ended) await new Promise<void>((r) => (this.wake = r))
        if (this.offered) {
          const { value, taken } = this.offered
          this.offered = undefined
          taken()
          yield value
          continue
        }
        if (this.failure) throw this.failure.e
        return
      }
    } finally {
      this.abandon()
    }
  }
}

function gone(): Error {
  return new Error('the consumer of a handover stopped')
}
