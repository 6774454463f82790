import { Status, StatusError } from '../grpc/status.js'

export interface TransferLimits {
  /** Heavy streams (blob and Directory transfers) served at once, daemon-wide. */
  maxTransfers: number
  /** A transfer whose client reads or sends nothing for this long is cancelled (0: never). */
  callIdleMs: number
  /**
   * A transfer still running this long after it started is cancelled (0 or
   * unset: never): bounds a client that keeps sending, or reading, a trickle
   * forever, which the idle timeout never catches. Checked between messages.
   */
  maxCallMs?: number
}

/** Calls beyond this many waiting for a slot are refused at once. */
const MAX_WAITING = 1024

/**
 * Slots for heavy streams. Each one in flight holds buffers (a read-ahead,
 * a pack batch); a bound on their number bounds the daemon's memory, and
 * the idle timeout keeps a stalled client from holding a slot forever.
 * Waiting calls hold nothing but their call: HTTP/2 flow control keeps
 * what their clients send in the (bounded) receive windows.
 */
export class Transfers {
  private active = 0
  private readonly waiting: Array<() => void> = []

  constructor(readonly limits: TransferLimits) {}

  /** A slot, first come first served; the returned function frees it. Rejects if `signal` aborts while waiting. */
  async acquire(signal: AbortSignal): Promise<() => void> {
    if (this.active >= this.limits.maxTransfers) {
      if (this.waiting.length >= MAX_WAITING) throw new StatusError(Status.RESOURCE_EXHAUSTED, 'too many transfers in progress; try again later')
      await new Promise<void>((resolve, reject) => {
        const go = () => {
          signal.removeEventListener('abort', drop)
          resolve()
        }
        const drop = () => {
          this.waiting.splice(this.waiting.indexOf(go), 1)
          reject(new StatusError(Status.CANCELLED, 'the client cancelled the call'))
        }
        this.waiting.push(go)
        signal.addEventListener('abort', drop, { once: true })
      })
    } else {
      this.active++
    }
    let freed = false
    return () => {
      if (freed) return
      freed = true
      // The slot passes straight to the next waiter, or is given back.
      const next = this.waiting.shift()
      if (next) next()
      else this.active--
    }
  }
}

/**
 * A transfer's time budget, from now: `check()` throws DEADLINE_EXCEEDED
 * once --max-call-time has passed (never, when it is 0 or unset).
 */
export function callDeadline(limits: TransferLimits): { check(): void } {
  const ms = limits.maxCallMs ?? 0
  const end = ms > 0 ? Date.now() + ms : Infinity
  return {
    check() {
      if (Date.now() > end) throw new StatusError(Status.DEADLINE_EXCEEDED, `the call took longer than ${ms / 1000} s (--max-call-time)`)
    },
  }
}

/** For handlers used without a daemon's limits (tests, embedding). */
export const UNLIMITED = new Transfers({ maxTransfers: Infinity, callIdleMs: 0 })

/**
 * Settles like `p`, or rejects with DEADLINE_EXCEEDED saying `what` if
 * `ms` pass first (never, when `ms` is 0).
 */
export async function withinIdle<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  if (ms <= 0) return p
  // Once timed out, a later rejection of `p` is nobody's business.
  p.catch(() => {})
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new StatusError(Status.DEADLINE_EXCEEDED, `${what} for ${ms / 1000} s`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}
