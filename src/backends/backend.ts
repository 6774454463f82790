import type { BlobService } from '../castore/blob-service.js'
import type { Store } from '../store/store.js'
import type { StoreAddress } from './url-forms.js'

/*
 * What a backend folder provides to the registry (registry.ts): kept
 * apart from the registry itself, which imports the folders lazily, so
 * that no backend imports the module that imports it.
 */

export type ServiceKind = 'blobs' | 'directories' | 'pathInfos'
export const SERVICE_KINDS: readonly ServiceKind[] = ['blobs', 'directories', 'pathInfos']

/** How a client proves who it talks to and who it is: for grpc+https and https:// caches, and tokens for daemons. */
export interface ClientSecurity {
  /** PEM certificates trusted instead of Node's built-in CA list (`--tls-ca`). */
  tlsCa?: Buffer
  /** Sent to daemons as `authorization: Bearer TOKEN` (`--auth-token-file`, TVIX_STORE_TOKEN). */
  token?: string
}

export interface OpenContext {
  /** The URL as the user wrote it (for messages). */
  url: string
  storeDir: string
  /** A store that does not exist yet is a NotFoundError ("no store at …"), for commands that only read. */
  mustExist: boolean
  /**
   * For a backend that does not serve blobs but serves both other
   * services: the blob service another URL opened. It may then return a
   * whole Store over those blobs (its own capabilities and all); it does
   * not close them.
   */
  blobs?: BlobService
  client?: ClientSecurity
}

/**
 * What a backend opened from one URL: the services it serves (a whole
 * Store, capabilities and all, when it serves all three) and its close.
 */
export type OpenedServices = Partial<Pick<Store, ServiceKind>> & Pick<Store, 'storeDir' | 'close'>

/** What a backend folder's index.ts exports as `backend`. */
export interface BackendModule<A extends StoreAddress = StoreAddress> {
  open(addr: A, ctx: OpenContext): Promise<OpenedServices>
}
