import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { UnsupportedError, UsageError } from '../errors.js'
import { DEFAULT_STORE_DIR } from '../store/store-path.js'
import type { Store } from '../store/store.js'

/** What a store URL names. */
export type StoreAddress =
  | { kind: 'local'; path: string }
  | { kind: 'memory' }
  | { kind: 'grpc'; target: string; tls: boolean }

/** `$XDG_DATA_HOME/tvix-store`, else `~/.local/share/tvix-store`. */
export function defaultStoreLocation(env = process.env): string {
  const xdg = env.XDG_DATA_HOME
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.local', 'share')
  return path.join(base, 'tvix-store')
}

/**
 * Parses a store URL: a plain path or `file:///abs` (local directory),
 * `memory://`, `grpc+http://host:port`, `grpc+https://host:port`,
 * `grpc+unix:///abs/socket`.
 */
export function parseStoreUrl(url: string): StoreAddress {
  if (url === '') throw new UsageError('empty store URL')
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase()
  if (!scheme) return { kind: 'local', path: path.resolve(url) }
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new UsageError(`invalid store URL ${JSON.stringify(url)}`)
  }
  const noQuery = () => {
    if (u.search || u.hash) throw new UsageError(`store URL ${JSON.stringify(url)}: unexpected query or fragment`)
  }
  switch (scheme) {
    case 'file':
      noQuery()
      if (u.host !== '') throw new UsageError(`store URL ${JSON.stringify(url)}: file URLs take no host (file:///abs/path)`)
      return { kind: 'local', path: fileURLToPath(u) }
    case 'memory':
      noQuery()
      if (u.host !== '' || (u.pathname !== '' && u.pathname !== '/')) {
        throw new UsageError(`store URL ${JSON.stringify(url)}: memory:// takes no host or path`)
      }
      return { kind: 'memory' }
    case 'grpc+http':
    case 'grpc+https':
      if (u.host === '' || (u.pathname !== '' && u.pathname !== '/')) {
        throw new UsageError(`store URL ${JSON.stringify(url)}: want ${scheme}://HOST:PORT with no path`)
      }
      return { kind: 'grpc', target: u.host, tls: scheme === 'grpc+https' }
    case 'grpc+unix':
      if (u.host !== '' || !u.pathname.startsWith('/')) {
        throw new UsageError(`store URL ${JSON.stringify(url)}: want grpc+unix:///absolute/path`)
      }
      return { kind: 'grpc', target: `unix:${decodeURIComponent(u.pathname)}`, tls: false }
    default:
      throw new UsageError(`unknown store URL scheme ${JSON.stringify(scheme + ':')} (use a path, file://, memory://, grpc+http://, grpc+unix://)`)
  }
}

export interface OpenStoreOptions {
  url?: string
  storeDir?: string
  /** tvix-style per-service overrides: each a store URL serving that one service. */
  blobServiceAddr?: string
  directoryServiceAddr?: string
  pathInfoServiceAddr?: string
}

/** Opens the store a URL names; backends load lazily to keep start-up light. */
export async function openStore(opts: OpenStoreOptions = {}): Promise<Store> {
  const storeDir = normaliseStoreDir(opts.storeDir ?? DEFAULT_STORE_DIR)
  const url = opts.url ?? defaultStoreLocation()
  const base = await openOne(url, storeDir)
  const overrides = [opts.blobServiceAddr, opts.directoryServiceAddr, opts.pathInfoServiceAddr]
  if (overrides.every((o) => o === undefined)) return base
  // Each overridden service comes from a store of its own; all are closed together.
  const opened = [base]
  const pick = async (addr: string | undefined) => {
    if (addr === undefined) return base
    const s = await openOne(addr, storeDir)
    opened.push(s)
    return s
  }
  const [b, d, p] = [await pick(opts.blobServiceAddr), await pick(opts.directoryServiceAddr), await pick(opts.pathInfoServiceAddr)]
  return {
    blobs: b.blobs,
    directories: d.directories,
    pathInfos: p.pathInfos,
    storeDir,
    // A session on every store involved (local ones exclude their gc).
    writeSession: <T>(fn: () => Promise<T>) => opened.reduceRight<() => Promise<T>>((inner, s) => () => s.writeSession(inner), fn)(),
    close: async () => {
      for (const s of opened) await s.close()
    },
  }
}

async function openOne(url: string, storeDir: string): Promise<Store> {
  const addr = parseStoreUrl(url)
  switch (addr.kind) {
    case 'memory':
      return (await import('./memory/index.js')).openMemoryStore(storeDir)
    case 'local':
      return (await import('./local/index.js')).openLocalStore(addr.path, storeDir)
    case 'grpc':
      if (addr.tls) throw new UnsupportedError(`${url}: TLS (grpc+https) is not supported yet; use grpc+http or grpc+unix`)
      return (await import('./grpc/index.js')).openGrpcStore(addr.target, url, storeDir)
  }
}

function normaliseStoreDir(dir: string): string {
  if (!path.isAbsolute(dir)) throw new UsageError(`store dir ${JSON.stringify(dir)} must be an absolute path`)
  const n = path.posix.normalize(dir).replace(/\/+$/, '')
  if (n === '') throw new UsageError('store dir must not be /')
  return n
}

/**
 * The local store behind `store`, for what runs only where the data lives
 * (gc, verify, GC roots); one clear refusal for any other kind of store.
 */
export async function asLocalStore(store: Store, url: string, what: string): Promise<import('./local/index.js').LocalStore> {
  const { LocalStore } = await import('./local/index.js')
  if (store instanceof LocalStore) return store
  throw new UnsupportedError(`${what} works on a local store only, where the data lives: ${url} is not one (run it on the daemon's machine, against its store directory)`)
}
