import type { Store } from '../../store/store.js'
import { GrpcBlobService } from './blob.js'
import { GrpcDirectoryService } from './directory.js'
import { GrpcPathInfoService } from './path-info.js'
import { RpcClient } from './rpc.js'

export { GrpcBlobService, GrpcDirectoryService, GrpcPathInfoService, RpcClient }

/** All three services through one channel to a daemon (`target` in grpc-js syntax). */
export function openGrpcStore(target: string, display: string, storeDir: string): Store {
  const rpc = new RpcClient(target, display)
  return {
    blobs: new GrpcBlobService(rpc),
    directories: new GrpcDirectoryService(rpc),
    pathInfos: new GrpcPathInfoService(rpc),
    storeDir,
    close: async () => rpc.close(),
  }
}
