import { b3, b3Display, b3Hasher, toHex } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import type { Problem } from '../../store/capabilities.js'
import type { CallOptions } from '../../util/call-options.js'
import { forEachLimit, inOrder } from '../../util/pool.js'
import type { ChunkInventory } from './inventory.js'

/*
 * Verify's blob half on a chunked object store: every chunk object
 * re-hashed against its name and its recorded size, every chunk list
 * decoded, its chunks present, their sizes adding up to the size recorded
 * and their bytes, in order, to the blob's BLAKE3. Chunks are held one at
 * a time per read in flight (each at most MAX_VERIFIED_CHUNK), never a
 * whole blob.
 */

/** Chunk lists checked at once, and chunk reads each keeps ahead: LISTS_AT_ONCE × AHEAD GETs in flight. */
const LISTS_AT_ONCE = 4
const AHEAD = 4
/** Lone chunk objects checked at once. */
const CHUNKS_AT_ONCE = 16

const display = (hex: string) => b3Display(Buffer.from(hex, 'hex'))

export class ChunkChecker {
  /** What the listing found: hex digests of chunk objects and of chunk lists. */
  readonly chunks = new Set<string>()
  readonly lists = new Set<string>()
  /** Raw sizes of the chunks and blobs found intact. */
  readonly sizes = new Map<string, number>()
  readonly badChunks = new Set<string>()
  /** Chunk lists that cannot be read, each with why (for repair's line). */
  readonly badLists = new Map<string, string>()
  checkedChunks = 0
  checkedLists = 0

  constructor(
    private readonly inv: ChunkInventory,
    private readonly problems: Problem[],
    private readonly opts: CallOptions = {},
  ) {}

  async list(): Promise<void> {
    for await (const hex of this.inv.chunkNames(this.opts)) this.chunks.add(hex)
    for await (const hex of this.inv.listNames(this.opts)) this.lists.add(hex)
  }

  has(hex: string): boolean {
    return this.chunks.has(hex) || this.lists.has(hex)
  }

  /** Whether the blob is stored but cannot be read whole and intact. */
  isBad(hex: string): boolean {
    return this.badLists.has(hex) || (this.badChunks.has(hex) && !this.lists.has(hex))
  }

  /** Checks these blobs (hex; each a chunk list or a lone chunk, absent ones skipped); `done` after each object. */
  async check(blobs: Iterable<string>, done: () => void): Promise<void> {
    const lists: string[] = []
    const lone: string[] = []
    for (const hex of blobs) {
      if (this.lists.has(hex)) lists.push(hex)
      else if (this.chunks.has(hex)) lone.push(hex)
    }
    await forEachLimit(lists, LISTS_AT_ONCE, async (hex) => {
      await this.checkList(hex)
      done()
    })
    // Chunks a list read are judged already; the rest (lone blobs, and chunks no list names) on their own.
    await forEachLimit(
      lone.filter((hex) => !this.sizes.has(hex) && !this.badChunks.has(hex)),
      CHUNKS_AT_ONCE,
      async (hex) => {
        await this.readChunk(hex)
        done()
      },
    )
  }

  private problem(message: string): void {
    this.problems.push({ message })
  }

  private async checkList(hex: string): Promise<void> {
    this.checkedLists++
    const blob = `blob ${display(hex)}`
    let list
    try {
      list = await this.inv.readList(hex, this.opts)
    } catch (e) {
      if (!(e instanceof IntegrityError)) throw e
      this.problem(`${e.message} in ${this.inv.where}`)
      this.badLists.set(hex, 'corrupt')
      return
    }
    if (!list) return // removed meanwhile (gc)
    const missing = list.chunks.map((c) => toHex(c.digest)).find((c) => !this.chunks.has(c))
    if (missing) {
      this.problem(`${blob} uses chunk ${display(missing)}, which is missing from ${this.inv.where}`)
      this.badLists.set(hex, `its chunk ${display(missing)} is gone`)
      return
    }
    const total = list.chunks.reduce((n, c) => n + c.size, 0)
    if (total !== list.recordedSize) {
      this.problem(`${blob} is corrupt: its size is recorded as ${list.recordedSize}, but its chunks add up to ${total}`)
      this.badLists.set(hex, 'corrupt')
      return
    }
    const whole = b3Hasher()
    let broken: string | undefined
    for await (const r of inOrder(list.chunks, AHEAD, async (c) => ({ hex: toHex(c.digest), size: c.size, data: await this.readChunk(toHex(c.digest)) }))) {
      if (broken) continue
      if (!r.data) broken = `its chunk ${display(r.hex)} is corrupt`
      else if (r.data.length !== r.size) {
        broken = 'corrupt'
        this.problem(`${blob} is corrupt: its chunk list gives chunk ${display(r.hex)} ${r.size} bytes, but it has ${r.data.length}`)
      } else whole.update(r.data)
    }
    if (!broken && toHex(whole.digest()) !== hex) {
      broken = 'corrupt'
      this.problem(`${blob} is corrupt: its chunks do not add up to its digest`)
    }
    if (broken) this.badLists.set(hex, broken)
    else this.sizes.set(hex, total)
  }

  /** The chunk's bytes if it is intact; else undefined, its problem reported once. */
  private async readChunk(hex: string): Promise<Buffer | undefined> {
    if (this.badChunks.has(hex)) return undefined
    let why: string | undefined
    let data: Buffer | undefined
    try {
      const stored = await this.inv.readChunk(hex, this.opts)
      if (!stored) why = `is missing from ${this.inv.where}`
      else if (toHex(b3(stored.data)) !== hex) why = 'is corrupt: its bytes do not match its digest'
      else if (stored.recordedSize !== stored.data.length) why = `is corrupt: its size is recorded as ${stored.recordedSize}, but it has ${stored.data.length} bytes`
      else data = stored.data
    } catch (e) {
      if (!(e instanceof IntegrityError)) throw e
      why = e.message.replace(/^chunk \S+ /, '')
    }
    const first = !this.sizes.has(hex) && !this.badChunks.has(hex)
    if (first) this.checkedChunks++
    if (data) {
      this.sizes.set(hex, data.length)
      return data
    }
    if (first) {
      this.badChunks.add(hex)
      this.problem(`chunk ${display(hex)} ${why}`)
    }
    return undefined
  }

  /** Removes the bad objects; one line each. */
  async repair(): Promise<string[]> {
    const removed: string[] = []
    for (const hex of this.badChunks) {
      if (!this.chunks.has(hex)) continue
      await this.inv.removeChunk(hex, this.opts)
      this.chunks.delete(hex)
      removed.push(`removed chunk ${display(hex)} from ${this.inv.where} (corrupt)`)
    }
    for (const [hex, why] of this.badLists) {
      await this.inv.removeList(hex, this.opts)
      this.lists.delete(hex)
      removed.push(`removed blob ${display(hex)} from ${this.inv.where} (${why})`)
    }
    return removed
  }
}
