import type { Node } from '../castore/node.js'

/** A NAR uploaded and ingested (its tree is in the castore), waiting for the narinfo that names it. */
export interface PendingNar {
  /** The root node of the ingested tree, unnamed. */
  root: Node
  narSha256: Uint8Array
  narSize: number
  /** Size of the file as uploaded (compressed). */
  fileSize: number
}

export interface PendingLimits {
  /** Entries kept at most; the oldest go first. */
  maxEntries: number
  /** An entry older than this is forgotten (its tree, unreferenced, goes with gc). */
  ttlMs: number
  now?: () => number
}

/**
 * NARs uploaded but not yet named by a narinfo, by file name
 * (`<filehash>.nar.xz`). Bounded in count and age: a client that uploads
 * NARs and never their narinfos costs a few hundred bytes each, for a while.
 * Entries stay after their narinfo arrives: another path with the same
 * NAR (same content, other name) may name the same file.
 */
export class PendingNars {
  private readonly entries = new Map<string, PendingNar & { at: number }>()
  private readonly now: () => number

  constructor(private readonly limits: PendingLimits) {
    this.now = limits.now ?? Date.now
  }

  add(name: string, nar: PendingNar): void {
    this.entries.delete(name)
    this.entries.set(name, { ...nar, at: this.now() })
    this.expire()
    // Map order is insertion order: the first key is the oldest.
    while (this.entries.size > this.limits.maxEntries) this.entries.delete(this.entries.keys().next().value!)
  }

  get(name: string): PendingNar | undefined {
    this.expire()
    return this.entries.get(name)
  }

  delete(name: string): void {
    this.entries.delete(name)
  }

  get size(): number {
    return this.entries.size
  }

  private expire(): void {
    const oldest = this.now() - this.limits.ttlMs
    for (const [name, e] of this.entries) {
      if (e.at > oldest) break
      this.entries.delete(name)
    }
  }
}
