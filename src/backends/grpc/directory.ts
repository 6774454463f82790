import { type B3Digest, b3, b3Display, bytesEqual, toHex } from '../../castore/digest.js'
import { type Directory, directoryDigest, validateDirectory } from '../../castore/directory.js'
import { childDirectoryDigests, decodeDirectory, encodeDirectory } from '../../castore/proto.js'
import { bufferedStage, type DirectoryService, type DirectoryStage, requireServableDirectory } from '../../castore/directory-service.js'
import { IntegrityError, StoreError } from '../../errors.js'
import type { GetDirectoryRequest } from '../../grpc/messages.js'
import type { CallOptions } from '../../util/call-options.js'
import type { EncodedDirectory } from '../../castore/read-ahead.js'
import { peek, type RpcClient } from './rpc.js'

const SERVICE = 'tvix.castore.v1.DirectoryService'

export class GrpcDirectoryService implements DirectoryService {
  constructor(private readonly rpc: RpcClient) {}

  async get(digest: B3Digest, opts?: CallOptions): Promise<Directory | undefined> {
    let head
    try {
      head = await peek(this.rpc.leanServerStream<GetDirectoryRequest, Directory>(SERVICE, 'Get', { digest, recursive: false }, opts))
    } catch (e) {
      throw this.rpc.error(e, opts)
    }
    if (!head || head.first.done) return undefined
    await head.rest.return?.()
    return checked(head.first.value, digest)
  }

  /** Verifies that the first message is the root and every later one was announced before it (getClosureEncoded), and each is valid. */
  async *getClosure(root: B3Digest, opts?: CallOptions): AsyncIterable<Directory> {
    for await (const { bytes } of this.getClosureEncoded(root, opts)) {
      const dir = decodeDirectory(bytes)
      validateDirectory(dir)
      yield dir
    }
  }

  /**
   * The closure as getClosure gives it (root first, each Directory
   * announced by one before it), each Directory as its canonical bytes
   * with its digest, not decoded: a reader that walks the tree later
   * decodes each when it gets there, and need not hash a re-encoding to
   * know its digest. The bytes hash to a digest announced before them, so
   * they are that Directory's canonical encoding; a daemon that sent
   * another encoding of it is answered from the decoded Directory.
   * Not validated here: a reader validates each as it decodes it.
   */
  async *getClosureEncoded(root: B3Digest, opts?: CallOptions): AsyncIterable<EncodedDirectory> {
    const announced = new Set<string>([toHex(root)])
    // Leaving the loop (done, failed, or the caller stopped) returns the stream, which cancels the call.
    const stream = this.rpc.leanServerStreamBytes<GetDirectoryRequest>(SERVICE, 'Get', { digest: root, recursive: true }, opts)
    try {
      for await (let bytes of stream) {
        let digest = b3(bytes)
        if (!announced.has(toHex(digest))) {
          const dir = decodeDirectory(bytes)
          digest = directoryDigest(dir)
          if (!announced.has(toHex(digest))) throw new IntegrityError(`the daemon sent directory ${b3Display(digest)}, which nothing before it refers to`)
          bytes = encodeDirectory(dir)
        }
        for (const child of childDirectoryDigests(bytes)) announced.add(toHex(child))
        yield { digest, bytes }
      }
    } catch (e) {
      if (e instanceof StoreError) throw e
      throw this.rpc.error(e, opts)
    }
  }

  async putClosure(dirs: Iterable<Directory> | AsyncIterable<Directory>, opts?: CallOptions): Promise<B3Digest> {
    let last: Directory | undefined
    async function* tap() {
      for await (const d of dirs) {
        // Refused here with the reason, not by grpc-js as an oversized message.
        requireServableDirectory(d)
        last = d
        yield [encodeDirectory(d)]
      }
    }
    let root: Uint8Array
    try {
      root = await this.rpc.leanClientStream<Uint8Array>(SERVICE, 'Put', tap(), opts)
    } catch (e) {
      throw this.rpc.error(e, opts)
    }
    if (last && !bytesEqual(root, directoryDigest(last))) throw new IntegrityError(`the daemon answered root ${b3Display(root)} for a different closure`)
    return root
  }

  /** The protocol has no transactions: a staged closure is one Put at commit. */
  stage(): DirectoryStage {
    return bufferedStage(this)
  }
}

function checked(dir: Directory, digest: B3Digest): Directory {
  if (!bytesEqual(directoryDigest(dir), digest)) throw new IntegrityError(`the daemon sent the wrong directory for ${b3Display(digest)}`)
  validateDirectory(dir)
  return dir
}
