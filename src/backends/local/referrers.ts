import fsSync from 'node:fs'
import { decodePathInfo } from '../../store/proto.js'
import * as nixbase32 from '../../store/nixbase32.js'
import type { PathInfo } from '../../store/path-info.js'
import type { LocalRoot } from './layout.js'

/**
 * The referrers index of a local store (format version 3): one empty file
 * per reference edge,
 *
 *   referrers/<hash part of P>/<hash part of R>     R refers to P
 *
 * so the referrers of P are one readdir, not a scan of every PathInfo.
 *
 * Invariant: a stored PathInfo has the entries of all its references. A
 * put creates them, durable, inside its commit and before the PathInfo
 * (sweeps are held off, so gc cannot take them in between); gc deletes a
 * PathInfo before its entries. An entry whose referrer is absent, or no
 * longer refers to P (a crash between the two writes, a PathInfo that
 * lost a race to another writer), is ignored on read and removed by gc.
 * An empty file has no contents to tear: creating it and fsyncing its
 * folder makes it durable.
 */
export class ReferrersIndex {
  constructor(private readonly root: LocalRoot) {}

  /** Creates the entries of `referrer`'s references, not yet durable (LocalRoot.sync makes them so). */
  add(referrer: Uint8Array, references: Uint8Array[]): void {
    const from = nixbase32.encode(referrer)
    for (const r of references) this.touch(nixbase32.encode(r), from)
  }

  private touch(referenced: string, referrer: string): void {
    const file = this.root.referrerEntryPath(referenced, referrer)
    const folder = this.root.referrersOf(referenced)
    for (let attempt = 0; ; attempt++) {
      try {
        // A new folder is itself an entry of referrers/: that must be durable too.
        if (fsSync.mkdirSync(folder, { recursive: true })) this.root.markDirty(this.root.referrersDir)
        fsSync.closeSync(fsSync.openSync(file, 'a', 0o444))
        this.root.markDirty(folder)
        return
      } catch (e) {
        // gc removed the folder of a deleted path between our mkdir and open (only an upgrade build writes outside a commit).
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) throw e
      }
    }
  }

  /** Hash parts of the paths that have an entry under `referenced` (unchecked: some may be stale). */
  candidates(referenced: string): string[] {
    try {
      return fsSync.readdirSync(this.root.referrersOf(referenced))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw e
    }
  }

  has(referenced: string, referrer: string): boolean {
    return fsSync.existsSync(this.root.referrerEntryPath(referenced, referrer))
  }

  /** Every entry: referenced hash part -> referrer hash parts. */
  *entries(): Generator<{ referenced: string; referrers: string[] }> {
    let names: string[]
    try {
      names = fsSync.readdirSync(this.root.referrersDir)
    } catch {
      return
    }
    for (const referenced of names) yield { referenced, referrers: this.candidates(referenced) }
  }

  /**
   * Removes every entry `live` does not vouch for (gc, with writers held
   * off), and the folders of paths left with none. Returns how many
   * entries went; the caller syncs.
   */
  prune(live: (referenced: string, referrer: string) => boolean): number {
    let removed = 0
    for (const { referenced, referrers } of this.entries()) {
      let left = referrers.length
      for (const r of referrers) {
        if (live(referenced, r)) continue
        if (this.root.remove(this.root.referrerEntryPath(referenced, r))) removed++
        left--
      }
      if (left === 0) {
        try {
          fsSync.rmdirSync(this.root.referrersOf(referenced))
          this.root.markDirty(this.root.referrersDir)
        } catch {
          // Not empty after all (an upgrade build added to it) or already gone.
        }
      }
    }
    return removed
  }

  /**
   * Builds the index of a store that predates it (format version < 3):
   * entries for every PathInfo stored, made durable. Idempotent, so a
   * build cut short by a crash is simply done again by the next writer.
   * Holds no lock: writers of this version add their own entries anyway,
   * and an entry for a path gc deletes meanwhile is stale, hence harmless.
   */
  async build(): Promise<void> {
    for (const name of this.root.pathInfoNames()) {
      const info = readPathInfoFile(this.root.pathInfoPath(name))
      // Filed under its own hash (a misfiled one is verify's to report).
      if (info && Buffer.from(info.node.name).toString('latin1').startsWith(`${name}-`)) this.add(nixbase32.decode(name), info.references)
    }
    await this.root.sync()
  }
}

/** A stored PathInfo decoded, or undefined if absent or corrupt (verify reports those). */
export function readPathInfoFile(file: string): PathInfo | undefined {
  try {
    return decodePathInfo(fsSync.readFileSync(file))
  } catch {
    return undefined
  }
}
