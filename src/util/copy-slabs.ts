import { BufferPool } from './buffer-pool.js'

interface Slab {
  buf: Buffer
  used: number
  /** Copies in it not yet released. */
  live: number
}

/** A copy in a slab: `bytes` stays valid until release() (after which the slab may be filled again). */
export interface SlabCopy {
  bytes: Buffer
  release(): void
}

/**
 * Copies of small buffers, packed into slabs that are used again once
 * every copy in them is released. A fresh buffer per copy cost more than
 * the copy itself on this VM (first touch of fresh memory, ~2 ms per MiB,
 * and GC): 15,000 small files queued for a daemon spent ~135 ms on
 * Buffer.from, ~25 ms in slabs. A copy larger than a slab gets a buffer
 * of its own. A copy never released (its user may still have a write of
 * it queued) keeps its slab out of use; GC takes the slab with it.
 */
export class CopySlabs {
  private readonly pool: BufferPool
  private current: Slab | undefined

  constructor(slabBytes: number, keep: number) {
    this.pool = new BufferPool(slabBytes, keep)
  }

  copy(data: Uint8Array): SlabCopy {
    if (data.length > this.pool.size) return { bytes: Buffer.from(data), release: () => {} }
    let s = this.current
    if (!s || s.used + data.length > s.buf.length) {
      if (s && s.live === 0) this.pool.give(s.buf)
      s = this.current = { buf: this.pool.take(), used: 0, live: 0 }
    }
    const slab = s
    const bytes = slab.buf.subarray(slab.used, slab.used + data.length)
    bytes.set(data)
    slab.used += data.length
    slab.live++
    let released = false
    return {
      bytes,
      release: () => {
        if (released) return
        released = true
        if (--slab.live > 0) return
        // The slab being filled starts again from its head; a full one goes back to the pool.
        if (slab === this.current) slab.used = 0
        else this.pool.give(slab.buf)
      },
    }
  }
}
