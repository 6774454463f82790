import { type BlobStage, hasStaging } from '../castore/blob-service.js'
import { type B3Digest, b3, b3Display, toHex } from '../castore/digest.js'
import { ConflictError } from '../errors.js'
import { inWriteSession } from '../store/capabilities.js'
import type { Store, TempRoots } from '../store/store.js'
import type { Log } from './calls.js'

/**
 * Longest a small blob a client put waits in the window before it is
 * committed (made durable and published to the store's other readers),
 * by default (`daemon --put-window`): a client that goes on with a
 * Directory or PathInfo Put, or a Stat or Read of it, commits it at once.
 * An import of many small files through the daemon makes one bundle per
 * second of upload.
 */
export const WINDOW_MS = 1000

/** A store's lookup of a small blob without a promise or a failing syscall (LocalBlobService.smallBlobKnown): a false "absent" costs a copy staged again; "present" is confirmed by has(). */
interface QuickSmallLookup {
  smallBlobKnown(digest: B3Digest): boolean
}

/** Small blobs put in one window, committed together. */
interface Window {
  stage: BlobStage
  /** Hex digests staged, with the temp roots of the connections that sent them. */
  staged: Map<string, Set<TempRoots>>
  /** Puts still writing into the stage: its commit waits for them. */
  writing: Set<Promise<unknown>>
  timer?: NodeJS.Timeout
  /** Set once the window is closed for commit: settles when it is committed (or failed). */
  committed?: Promise<void>
}

/**
 * The daemon's window of small blob Puts. A Put of one blob up to 1 MiB
 * is checked (its BLAKE3), written into the store's stage (a bundle, as a
 * local import writes its small files) and acknowledged; the stage is
 * committed (one sync for all of it, then renamed into place) within
 * WINDOW_MS, and before the daemon serves anything that could name or
 * read a blob put before it: a Directory Put, a PathInfo Put or
 * CalculateNAR (any connection's), or a Stat or Read of a blob in the
 * window. So through the daemon a Put is visible when it returns, as
 * before; what changes is that it is durable (and visible to other
 * processes opening the store's folder) at that commit, not at the Put's
 * answer: a daemon killed, or a machine that crashes, before it loses
 * the window's blobs whole (never a partial object), and never one a
 * Directory or PathInfo it accepted names.
 *
 * Per Put this saves two commits (the blob's and its temp root's), an
 * fsync of the file and of its folder, and a temp file and rename per
 * blob after the first 16 of a window.
 */
export class PutWindow {
  private open: Window | undefined
  /** Windows being committed. */
  private readonly closing = new Set<Window>()

  private constructor(
    private readonly store: Store,
    private readonly stageOf: () => BlobStage,
    private readonly log: Log,
    private readonly windowMs: number,
  ) {}

  /** A window for a store whose blobs stage (a local store); undefined for others, and for a window of 0 (each Put final when answered). */
  static for(store: Store, log: Log, windowMs = WINDOW_MS): PutWindow | undefined {
    const { blobs } = store
    return hasStaging(blobs) && windowMs > 0 ? new PutWindow(store, () => blobs.stage(), log, windowMs) : undefined
  }

  /**
   * Stages one small blob (a Put's whole data) and returns its digest. A
   * blob the store holds already is not written; the connection's temp
   * root keeps it, as before (`roots`: undefined where the store keeps none).
   * `digest`: the data's BLAKE3 where the caller has just computed it.
   */
  async put(data: Uint8Array, roots: TempRoots | undefined, digest: B3Digest = b3(data)): Promise<B3Digest> {
    const hex = toHex(digest)
    const open = this.open
    const staged = open?.staged.get(hex)
    if (staged) {
      if (roots) staged.add(roots)
      return digest
    }
    const { blobs } = this.store
    // Asked the quick way first where the store can (most blobs put are new); a blob it knows of is confirmed.
    const known = (blobs as Partial<QuickSmallLookup>).smallBlobKnown?.(digest) ?? true
    if (known && (await blobs.has(digest))) {
      if (roots && !(await roots.holdIf('blob', hex, () => blobs.has(digest)))) throw goneError(digest)
      return digest
    }
    const w = this.current()
    const written = w.stage.put(data, { digest })
    w.writing.add(written)
    try {
      await written
    } finally {
      w.writing.delete(written)
    }
    const sent = w.staged.get(hex) ?? new Set<TempRoots>()
    if (roots) sent.add(roots)
    w.staged.set(hex, sent)
    return digest
  }

  /** Whether `digest` waits in a window (not yet committed). */
  holds(digest: B3Digest): boolean {
    const hex = toHex(digest)
    if (this.open?.staged.has(hex)) return true
    for (const w of this.closing) if (w.staged.has(hex)) return true
    return false
  }

  /** Commits `digest`'s window first if it waits in one: a Stat or Read then finds it stored. */
  async settle(digest: B3Digest): Promise<void> {
    if (this.holds(digest)) await this.flush()
  }

  /**
   * Commits every blob put so far; resolves once they are durable and
   * published. Fails (the blobs lost, each Put already answered) if a
   * commit failed: then what names them is refused as naming absent blobs.
   */
  async flush(): Promise<void> {
    if (this.open) this.close(this.open)
    const waiting = [...this.closing].map((w) => w.committed!)
    await Promise.all(waiting)
  }

  private current(): Window {
    if (this.open) return this.open
    const w: Window = { stage: this.stageOf(), staged: new Map(), writing: new Set() }
    w.timer = setTimeout(() => this.close(w).catch(() => {}), this.windowMs)
    // The daemon's shutdown flushes: the timer holds nothing up.
    w.timer.unref()
    this.open = w
    return w
  }

  private close(w: Window): Promise<void> {
    if (w.committed) return w.committed
    clearTimeout(w.timer)
    if (this.open === w) this.open = undefined
    this.closing.add(w)
    w.committed = this.commit(w).finally(() => this.closing.delete(w))
    // Heard by flush() callers; a commit by the timer is logged only.
    w.committed.catch(() => {})
    return w.committed
  }

  private async commit(w: Window): Promise<void> {
    // Puts answered only after their write: none is in flight then, but one still writing joins this commit.
    await Promise.allSettled(w.writing)
    if (w.staged.size === 0) {
      await w.stage.abort()
      return
    }
    try {
      await inWriteSession(this.store, async () => {
        // Rooted before they are published, so no sweep between the two can take them.
        const byRoots = new Map<TempRoots, string[]>()
        // Appended in place: a copy per blob made a window of n blobs from one connection cost n² (a batched import fills windows fast).
        for (const [hex, sent] of w.staged) {
          for (const r of sent) {
            const names = byRoots.get(r)
            if (names) names.push(hex)
            else byRoots.set(r, [hex])
          }
        }
        for (const [r, names] of byRoots) await holdAll(r, names)
        await w.stage.commit()
      })
    } catch (e) {
      await w.stage.abort()
      this.log(`committing ${w.staged.size} blobs put through the daemon failed (the clients were told they were stored): ${(e as Error).message}`)
      throw e
    }
  }
}

/** Temp roots for objects about to be published (present or not yet: a name of nothing keeps nothing). */
async function holdAll(roots: TempRoots, names: string[]): Promise<void> {
  if (roots.holdAll) return roots.holdAll('blob', names)
  for (const n of names) await roots.holdIf('blob', n, async () => true)
}

function goneError(digest: B3Digest): ConflictError {
  return new ConflictError(`blob ${b3Display(digest)} was garbage-collected as it was written; send it again`)
}
