import type { Store } from '../../store/store.js'
import { hasWriteSessions, inWriteSession, type WriteSessions } from '../../store/capabilities.js'
import { CacheBlobService } from './blob.js'
import { CacheDirectoryService } from './directory.js'
import { CachePathInfoService } from './path-info.js'

export { CacheBlobService, CacheDirectoryService, CachePathInfoService }

/**
 * `near` in front of `far`, as snix's cache service: reads try `near`
 * and, on a miss, read `far` and fill `near` with what they read; writes
 * go to `far`, then `near`. A write session is one on each side (far's
 * outside, near's inside).
 */
export function cacheStore(near: Store, far: Store): Store {
  const store: Store = {
    blobs: new CacheBlobService(near.blobs, far.blobs),
    directories: new CacheDirectoryService(near, far),
    pathInfos: new CachePathInfoService(near, far),
    storeDir: far.storeDir,
    close: async () => {
      await Promise.all([near.close(), far.close()])
    },
  }
  if (!hasWriteSessions(near) && !hasWriteSessions(far)) return store
  // The session's view: this cache over the two sides' views.
  const sessions: WriteSessions = { writeSession: (fn) => inWriteSession(far, (farView) => inWriteSession(near, (nearView) => fn(cacheStore(nearView, farView)))) }
  return Object.assign(store, sessions)
}
