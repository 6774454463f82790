import { bytesEqual } from '../../castore/digest.js'
import { IntegrityError } from '../../errors.js'
import type { GetPathInfoRequest } from '../../grpc/messages.js'
import { type PathInfo, validatePathInfo } from '../../store/path-info.js'
import { checkPut } from '../../store/path-info-admission.js'
import type { AdmitsOnPut, PathInfoService } from '../../store/path-info-service.js'
import type { CallOptions } from '../../util/call-options.js'
import { isNotFound, type RpcClient } from './rpc.js'

const SERVICE = 'tvix.store.v1.PathInfoService'

export class GrpcPathInfoService implements PathInfoService, AdmitsOnPut {
  /** The daemon admits every Put against its own store: publishing through it needs no tree walk over the wire first. */
  readonly admitsOnPut = true

  constructor(private readonly rpc: RpcClient) {}

  async get(storePathDigest: Uint8Array, opts?: CallOptions): Promise<PathInfo | undefined> {
    let info: PathInfo
    try {
      info = await this.rpc.unary<GetPathInfoRequest, PathInfo>(SERVICE, 'Get', { byOutputHash: storePathDigest }, opts)
    } catch (e) {
      if (isNotFound(e)) return undefined
      throw this.rpc.error(e, opts)
    }
    // Trust nothing on the wire: it must be valid and be the path we asked for.
    if (!bytesEqual(validatePathInfo(info).digest, storePathDigest)) {
      throw new IntegrityError(`the daemon answered a PathInfo for another store path`)
    }
    return info
  }

  /** The daemon runs the admission check; we only refuse what is plainly invalid. */
  async put(info: PathInfo, opts?: CallOptions): Promise<PathInfo> {
    checkPut(info)
    try {
      return await this.rpc.unary<PathInfo, PathInfo>(SERVICE, 'Put', info, opts)
    } catch (e) {
      throw this.rpc.error(e, opts)
    }
  }

  async *list(opts?: CallOptions): AsyncIterable<PathInfo> {
    try {
      yield* this.rpc.leanServerStream<unknown, PathInfo>(SERVICE, 'List', {}, opts)
    } catch (e) {
      throw this.rpc.error(e, opts)
    }
  }
}
