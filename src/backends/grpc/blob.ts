import { type BlobInfo, type BlobService, type ChunkMeta, type BlobStage, type ByteSource, iterateSource, verifyBlob, writeThroughStage } from '../../castore/blob-service.js'
import { type B3Digest, b3Display, b3Hasher, bytesEqual } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import { BLOB_CHUNK_BYTES } from '../../grpc/definitions.js'
import type { StatBlobRequest, StatBlobResponse } from '../../grpc/messages.js'
import { isNotFound, peek, type RpcClient } from './rpc.js'

const SERVICE = 'tvix.castore.v1.BlobService'

export class GrpcBlobService implements BlobService {
  readonly remote = true

  constructor(private readonly rpc: RpcClient) {}

  /** Stat with send_chunks: the chunk list of a chunked blob (empty if stored whole). */
  async chunks(digest: B3Digest): Promise<ChunkMeta[] | undefined> {
    try {
      const r = await this.rpc.unary<StatBlobRequest, StatBlobResponse>(SERVICE, 'Stat', { digest, sendChunks: true, sendBao: false })
      for (const c of r.chunks) if (c.digest.length !== 32) throw new IntegrityError('the daemon listed a chunk with a malformed digest')
      return r.chunks
    } catch (e) {
      if (isNotFound(e)) return undefined
      if (e instanceof IntegrityError) throw e
      throw this.rpc.error(e)
    }
  }

  async has(digest: B3Digest): Promise<boolean> {
    try {
      await this.rpc.unary<StatBlobRequest, unknown>(SERVICE, 'Stat', { digest, sendChunks: false, sendBao: false })
      return true
    } catch (e) {
      if (isNotFound(e)) return false
      throw this.rpc.error(e)
    }
  }

  async open(digest: B3Digest): Promise<AsyncIterable<Uint8Array> | undefined> {
    let head
    try {
      head = await peek(this.rpc.serverStream<Uint8Array, Uint8Array>(SERVICE, 'Read', digest))
    } catch (e) {
      throw this.rpc.error(e)
    }
    if (!head) return undefined
    const { first, rest } = head
    const rpc = this.rpc
    async function* chunks(): AsyncGenerator<Uint8Array> {
      try {
        if (first.done) return
        yield first.value
        for (let r = await rest.next(); !r.done; r = await rest.next()) yield r.value
      } catch (e) {
        throw rpc.error(e)
      } finally {
        await rest.return?.()
      }
    }
    // The server does not re-check what it sends; we do (SPEC 3.2).
    return verifyBlob(digest, chunks())
  }

  async put(src: ByteSource): Promise<BlobInfo> {
    const h = b3Hasher()
    let size = 0
    async function* pieces(): AsyncGenerator<Uint8Array> {
      for await (const c of iterateSource(src)) {
        h.update(c)
        size += c.length
        for (let i = 0; i < c.length; i += BLOB_CHUNK_BYTES) yield c.subarray(i, i + BLOB_CHUNK_BYTES)
      }
    }
    let digest: Uint8Array
    try {
      digest = await this.rpc.clientStream<Uint8Array, Uint8Array>(SERVICE, 'Put', pieces())
    } catch (e) {
      throw this.rpc.error(e)
    }
    const ours = h.digest()
    if (!bytesEqual(ours, digest)) {
      throw new IntegrityError(`the daemon stored blob ${b3Display(ours)} as ${b3Display(digest)}`)
    }
    return { digest: ours, size }
  }

  /** The protocol has no transactions: staged blobs are uploaded at once. */
  stage(): BlobStage {
    return writeThroughStage(this)
  }
}
