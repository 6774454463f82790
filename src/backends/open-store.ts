import os from 'node:os'
import path from 'node:path'
import { NotFoundError, UnsupportedError, UsageError } from '../errors.js'
import { DEFAULT_STORE_DIR } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { inWriteSession, type WriteSessions } from '../store/capabilities.js'
import { type BackendModule, backendOf, type ClientSecurity, type OpenContext, type OpenedServices, parseStoreUrl, SERVICE_KINDS, type ServiceKind } from './registry.js'
import type { LocalAddress, StoreAddress } from './url-forms.js'

export { parseStoreUrl } from './registry.js'
export type { StoreAddress } from './url-forms.js'
export type { ClientSecurity } from './registry.js'

/** `$XDG_DATA_HOME/tvix-store`, else `~/.local/share/tvix-store`. */
export function defaultStoreLocation(env = process.env): string {
  const xdg = env.XDG_DATA_HOME
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.local', 'share')
  return path.join(base, 'tvix-store')
}

export interface OpenStoreOptions {
  url?: string
  storeDir?: string
  /** tvix-style per-service overrides: each a store URL serving that one service. */
  blobServiceAddr?: string
  directoryServiceAddr?: string
  pathInfoServiceAddr?: string
  /** A store URL put in front of the store as a cache (backends/cache): reads fill it, writes go to both. */
  cacheUrl?: string
  /** A local store that does not exist yet is an error (NotFoundError), not an empty store: for commands that only read. */
  mustExist?: boolean
  /** TLS trust and the token for remote stores (daemons, HTTPS caches). */
  client?: ClientSecurity
}

/**
 * Opens the store a URL names, each service from its own URL where one is
 * given (`--*-service-addr`): the backends come from the registry and
 * load lazily. One URL for all three services gives that backend's own
 * store, capabilities and all; several are combined, each URL opened once.
 */
export async function openStore(opts: OpenStoreOptions = {}): Promise<Store> {
  if (opts.cacheUrl === undefined) return openUncached(opts)
  // The cache is filled by reads too, so it is created when missing.
  const near = await openUncached({ url: opts.cacheUrl, storeDir: opts.storeDir, client: opts.client })
  const far = await openUncached(opts).catch(async (e) => {
    await near.close()
    throw e
  })
  return (await import('./cache/index.js')).cacheStore(near, far)
}

async function openUncached(opts: OpenStoreOptions): Promise<Store> {
  const storeDir = normaliseStoreDir(opts.storeDir ?? DEFAULT_STORE_DIR)
  const url = opts.url ?? defaultStoreLocation()
  const urlOf: Record<ServiceKind, string> = {
    blobs: opts.blobServiceAddr ?? url,
    directories: opts.directoryServiceAddr ?? url,
    pathInfos: opts.pathInfoServiceAddr ?? url,
  }
  // Every URL checked, and each asked only for what it serves, before any backend loads.
  const byUrl = new Map<string, { addr: StoreAddress; load(): Promise<BackendModule> }>()
  for (const kind of SERVICE_KINDS) {
    const u = urlOf[kind]
    if (byUrl.has(u)) continue
    const addr = parseStoreUrl(u)
    const backend = backendOf(addr)
    const unserved = SERVICE_KINDS.filter((k) => urlOf[k] === u && !backend.serves.includes(k))
    if (unserved.length > 0) {
      const note = backend.unservedNote ? ` (${backend.unservedNote})` : ''
      throw new UsageError(`store URL ${JSON.stringify(u)} does not serve ${unserved.join(' or ')}${note}: give ${unserved.map(flagOf).join(' and ')}`)
    }
    byUrl.set(u, { addr, load: backend.load })
  }
  const opened = new Map<string, OpenedServices>()
  try {
    // Blobs first: a backend serving the other two services from one URL is given them (OpenContext.blobs).
    for (const [u, { addr, load }] of byUrl) {
      const blobs = u !== urlOf.blobs && urlOf.directories === u && urlOf.pathInfos === u ? opened.get(urlOf.blobs)?.blobs : undefined
      opened.set(u, await openOne(addr, await load(), { url: u, storeDir, mustExist: opts.mustExist ?? false, blobs, client: opts.client }))
    }
  } catch (e) {
    for (const s of opened.values()) await s.close()
    throw e
  }
  if (opened.size === 1) return [...opened.values()][0] as Store
  const whole = opened.get(urlOf.pathInfos)!
  const blobPart = opened.get(urlOf.blobs)!
  if (urlOf.directories === urlOf.pathInfos && urlOf.pathInfos !== urlOf.blobs && whole.blobs !== undefined && whole.blobs === blobPart.blobs) {
    // The metadata backend built the store over the other URL's blobs: it closes first, then the blobs.
    const store = whole as Store
    const closeStore = store.close.bind(store)
    store.close = async () => {
      try {
        await closeStore()
      } finally {
        await blobPart.close()
      }
    }
    return store
  }
  const close = async () => {
    for (const s of opened.values()) await s.close()
  }
  return mixedStore(opened, urlOf, storeDir, close)
}

/** Each service from the store opened for its URL; a write session is one on every store involved (local ones exclude their gc), its view made of their views. */
function mixedStore(opened: Map<string, OpenedServices>, urlOf: Record<ServiceKind, string>, storeDir: string, close: () => Promise<void>): Store & WriteSessions {
  return {
    blobs: opened.get(urlOf.blobs)!.blobs!,
    directories: opened.get(urlOf.directories)!.directories!,
    pathInfos: opened.get(urlOf.pathInfos)!.pathInfos!,
    storeDir,
    writeSession: (fn) => inEachSession([...opened], new Map(), (views) => fn(mixedStore(views, urlOf, storeDir, close))),
    close,
  }
}

/** `fn` inside a write session on each of `parts` (the first outermost), given their views by URL. */
function inEachSession<T>(parts: Array<[string, OpenedServices]>, views: Map<string, OpenedServices>, fn: (views: Map<string, OpenedServices>) => Promise<T>): Promise<T> {
  if (parts.length === 0) return fn(views)
  const [[url, part], ...rest] = parts
  return inWriteSession(part as Store, (view) => inEachSession(rest, new Map(views).set(url, view), fn))
}

const flagOf = (kind: ServiceKind) => ({ blobs: '--blob-service-addr', directories: '--directory-service-addr', pathInfos: '--path-info-service-addr' })[kind]

async function openOne(addr: StoreAddress, backend: BackendModule, ctx: OpenContext): Promise<OpenedServices> {
  try {
    return await backend.open(addr, ctx)
  } catch (e) {
    // Said when the store is first used: a command's bad arguments are reported first.
    if (ctx.mustExist && e instanceof NotFoundError) return missingStore(e, ctx.storeDir)
    throw e
  }
}

/** How logs name a store: a local one by its absolute folder, any other by its URL. */
export function storeLabel(url = defaultStoreLocation()): string {
  const addr = parseStoreUrl(url)
  return addr.kind === 'local' ? (addr as LocalAddress).path : url
}

function normaliseStoreDir(dir: string): string {
  if (!path.isAbsolute(dir)) throw new UsageError(`store dir ${JSON.stringify(dir)} must be an absolute path`)
  const n = path.posix.normalize(dir).replace(/\/+$/, '')
  if (n === '') throw new UsageError('store dir must not be /')
  return n
}

/**
 * Stands in for a local store that does not exist, opened by a command
 * that only reads: every use of it throws `error` ("no store at …"),
 * including the capabilities of the local store it stands for (gc,
 * verify, GC roots), so those commands say so too, not "unsupported".
 */
function missingStore(error: NotFoundError, storeDir: string): Store {
  const refuse = () => {
    throw error
  }
  // Any method of any service; `then` stays undefined so a service is not taken for a promise.
  const service = new Proxy({}, { get: (_, key) => (key === 'then' ? undefined : refuse) }) as never
  return { blobs: service, directories: service, pathInfos: service, storeDir, writeSession: refuse, collectGarbage: refuse, verify: refuse, roots: service, close: async () => {} } as Store
}
