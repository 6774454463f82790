import { type BlobInfo, type BlobService, type BlobStage, type ByteSource, type ChunkMeta, hasStaging, iterateSource, stageOrWriteThrough } from '../../castore/blob-service.js'
import { type B3Digest, b3Display, bytesEqual } from '../../castore/digest.js'
import { blobSource } from '../../castore/transfer.js'
import { IntegrityError } from '../../errors.js'
import { Handover } from './handover.js'

/**
 * Blobs from `near` when it has them, else from `far`, written to `near`
 * as they stream past (only the chunks `near` lacks are fetched, when
 * `far` lists chunks). Writes go to both, `far` first: `near` commits
 * only once `far` holds the blob.
 */
export class CacheBlobService implements BlobService {
  size?: (d: B3Digest) => Promise<number | undefined>
  chunks?: (d: B3Digest) => Promise<ChunkMeta[] | undefined>
  /** Staging, where both sides stage: a far side that writes through would show staged blobs before commit. */
  stage?: () => BlobStage

  constructor(
    private readonly near: BlobService,
    private readonly far: BlobService,
  ) {
    // Capabilities the cache can answer for every blob: a size needs both sides to tell one.
    if (near.size && far.size) this.size = async (d) => (await near.size!(d)) ?? far.size!(d)
    if (far.chunks) {
      this.chunks = async (d) => {
        const here = near.chunks ? await near.chunks(d) : (await near.has(d)) ? [] : undefined
        return here ?? far.chunks!(d)
      }
    }
    if (hasStaging(near) && hasStaging(far)) this.stage = () => this.stageBoth()
  }

  async has(d: B3Digest): Promise<boolean> {
    return (await this.near.has(d)) || this.far.has(d)
  }

  async open(d: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined> {
    const here = await this.near.open(d)
    if (here) return here
    const src = await blobSource(this.far, this.near, d)
    return src && this.readThrough(d, src)
  }

  /**
   * Passes `src` (checked against `d` by its reader) on while writing it
   * to a stage of `near`, committed once the whole blob went through and
   * `near` computed the same digest. A reader that stops early leaves
   * `near` as it was.
   */
  private async *readThrough(d: B3Digest, src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    const stage = stageOrWriteThrough(this.near)
    const copy = new Handover<Uint8Array>()
    const written = stage.put(copy)
    written.catch(() => copy.abandon())
    let filled = false
    try {
      for await (const piece of src) {
        await copy.give(piece).catch(() => written)
        yield piece
      }
      copy.end()
      const info = await written
      if (!bytesEqual(info.digest, d)) throw new IntegrityError(`blob ${b3Display(d)} was cached as ${b3Display(info.digest)}`)
      await stage.commit()
      filled = true
    } finally {
      if (!filled) {
        copy.end({ e: new Error('the read of the far blob stopped') })
        await written.catch(() => {})
        await stage.abort()
      }
    }
  }

  async put(src: ByteSource): Promise<BlobInfo> {
    const nearStage = stageOrWriteThrough(this.near)
    try {
      const info = await putBoth((s) => this.far.put(s), nearStage, src)
      await nearStage.commit()
      return info
    } catch (e) {
      await nearStage.abort()
      throw e
    }
  }

  private stageBoth(): BlobStage {
    const far = stageOrWriteThrough(this.far)
    const near = stageOrWriteThrough(this.near)
    return {
      // Visible at once if either side's puts are: has() asks both.
      writesThrough: Boolean(far.writesThrough || near.writesThrough),
      put: (src) => putBoth((s) => far.put(s), near, src),
      commit: async () => {
        await far.commit()
        await near.commit()
      },
      abort: async () => {
        await Promise.allSettled([far.abort(), near.abort()])
      },
    }
  }
}

/**
 * Streams `src` into `farPut` and `near` at once, a piece at a time (the
 * slower side sets the pace, nothing is held): the far side's result, once
 * both sides computed the same digest.
 */
async function putBoth(farPut: (src: AsyncIterable<Uint8Array>) => Promise<BlobInfo>, near: Pick<BlobStage, 'put'>, src: ByteSource): Promise<BlobInfo> {
  const copy = new Handover<Uint8Array>()
  const nearPut = near.put(copy)
  nearPut.catch(() => copy.abandon())
  async function* teed(): AsyncGenerator<Uint8Array> {
    for await (const piece of iterateSource(src)) {
      // The near side failed: its own error says why.
      await copy.give(piece).catch(() => nearPut)
      yield piece
    }
  }
  let info: BlobInfo
  try {
    info = await farPut(teed())
  } catch (e) {
    copy.end({ e })
    await nearPut.catch(() => {})
    throw e
  }
  copy.end()
  const here = await nearPut
  if (!bytesEqual(here.digest, info.digest)) throw new IntegrityError(`blob ${b3Display(info.digest)} was cached as ${b3Display(here.digest)}`)
  return info
}
