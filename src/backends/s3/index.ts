import type { BackendModule } from '../backend.js'
import type { S3Address } from './address.js'
import { S3BlobService } from './blob.js'
import { S3Client, credentialsFromEnv } from './client.js'

export { S3BlobService, S3Client }

/** The registry's entry point: blobs in a bucket (directories and path infos come from another URL). */
export const backend: BackendModule<S3Address> = {
  open: async (addr, ctx) => {
    const s3 = new S3Client(addr, credentialsFromEnv(ctx.url))
    return { blobs: new S3BlobService(s3), storeDir: ctx.storeDir, close: () => s3.close() }
  },
}
