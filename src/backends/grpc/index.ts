import type { Store } from '../../store/store.js'
import type { BackendModule } from '../backend.js'
import type { GrpcAddress } from '../url-forms.js'
import { GrpcBlobService } from './blob.js'
import { GrpcDirectoryService } from './directory.js'
import { GrpcPathInfoService } from './path-info.js'
import { type Connection, RpcClient } from './rpc.js'

export { GrpcBlobService, GrpcDirectoryService, GrpcPathInfoService, RpcClient }

/** All three services through one channel to a daemon (`target` in grpc-js syntax). */
export function openGrpcStore(target: string, display: string, storeDir: string, connection: Connection = {}): Store {
  const rpc = new RpcClient(target, display, connection)
  return {
    blobs: new GrpcBlobService(rpc),
    directories: new GrpcDirectoryService(rpc),
    pathInfos: new GrpcPathInfoService(rpc),
    storeDir,
    close: async () => rpc.close(),
  }
}

/** The registry's entry point: a daemon, dialled on first use. */
export const backend: BackendModule<GrpcAddress> = {
  open: async (addr, ctx) => openGrpcStore(addr.target, ctx.url, ctx.storeDir, { tls: addr.tls ? { ca: ctx.client?.tlsCa } : undefined, token: ctx.client?.token }),
}
