import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { NotFoundError, UnsupportedError, UsageError } from '../errors.js'
import { DEFAULT_STORE_DIR } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { inWriteSession, type WriteSessions } from '../store/capabilities.js'

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
  if (!scheme) {
    refuseNixWord(url)
    return { kind: 'local', path: path.resolve(url) }
  }
  refuseNixScheme(url, scheme)
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
      // grpc-js would dial 443, tvix's clients 80: neither is where a daemon listens. Say it rather than guess.
      if (u.port === '') {
        throw new UsageError(`store URL ${JSON.stringify(url)} has no port: want ${scheme}://HOST:PORT (\`tvix-store daemon\` listens on port 8000 by default)`)
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

/** Nix's own stores, by the bare word (`daemon`, `local?root=/x`) or the scheme of their URL (Nix 2.8). */
const NIX_WORDS: Record<string, string> = { auto: "Nix's default store", daemon: 'the Nix daemon', local: 'a Nix local store' }
const NIX_SCHEMES: Record<string, string> = {
  unix: 'the Nix daemon on a socket',
  ssh: 'a Nix store over SSH',
  'ssh-ng': 'a Nix store over SSH',
  dummy: "Nix's dummy store",
}
/** Schemes of Nix binary caches (`file://` is one only with parameters: plain `file:///abs` is our local folder). */
const BINARY_CACHES = new Set(['http', 'https', 's3'])

function nixStoreRefusal(url: string, what: string, hint = ''): UsageError {
  return new UsageError(
    `${JSON.stringify(url)} is a Nix store URL (${what}); tvix-store cannot open Nix's own stores: ` +
      'give a tvix store (a folder, grpc+http://HOST:PORT, grpc+unix:///SOCKET), and import from a Nix store with `copy --closure` (--nix-root DIR for a chroot store)' +
      hint,
  )
}

/**
 * A scheme-less URL is a folder, unless it is one of Nix's words or
 * carries parameters: refused rather than created as a folder named
 * `daemon` or `local?root=/x`. Such a folder is still reachable as ./NAME.
 */
function refuseNixWord(url: string): void {
  if (/^\.{0,2}\//.test(url)) return
  const word = url.split('?')[0]!
  const hint = ` (for a folder of that name, write ${JSON.stringify('./' + url)})`
  if (Object.hasOwn(NIX_WORDS, word)) throw nixStoreRefusal(url, NIX_WORDS[word]!, hint)
  if (url.includes('?')) throw new UsageError(`store URL ${JSON.stringify(url)} has parameters, and tvix-store takes none${hint}`)
}

function refuseNixScheme(url: string, scheme: string): void {
  if (Object.hasOwn(NIX_SCHEMES, scheme)) throw nixStoreRefusal(url, NIX_SCHEMES[scheme]!)
  // Nix takes every file:// URL for a binary cache; ours without parameters stays the local folder it always was.
  if (BINARY_CACHES.has(scheme) || (scheme === 'file' && url.includes('?'))) {
    throw new UnsupportedError(
      `${JSON.stringify(url)} is a Nix binary cache URL; tvix-store does not serve binary caches yet: give a tvix store (a folder, grpc+http://HOST:PORT, grpc+unix:///SOCKET)`,
    )
  }
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
}

/** Opens the store a URL names; backends load lazily to keep start-up light. */
export async function openStore(opts: OpenStoreOptions = {}): Promise<Store> {
  if (opts.cacheUrl === undefined) return openUncached(opts)
  // The cache is filled by reads too, so it is created when missing.
  const near = await openOne(opts.cacheUrl, normaliseStoreDir(opts.storeDir ?? DEFAULT_STORE_DIR))
  const far = await openUncached(opts).catch(async (e) => {
    await near.close()
    throw e
  })
  return (await import('./cache/index.js')).cacheStore(near, far)
}

async function openUncached(opts: OpenStoreOptions): Promise<Store> {
  const storeDir = normaliseStoreDir(opts.storeDir ?? DEFAULT_STORE_DIR)
  const url = opts.url ?? defaultStoreLocation()
  const base = await openOne(url, storeDir, opts.mustExist)
  const overrides = [opts.blobServiceAddr, opts.directoryServiceAddr, opts.pathInfoServiceAddr]
  if (overrides.every((o) => o === undefined)) return base
  // Each overridden service comes from a store of its own; all are closed together.
  const opened = [base]
  const pick = async (addr: string | undefined) => {
    if (addr === undefined) return base
    const s = await openOne(addr, storeDir, opts.mustExist)
    opened.push(s)
    return s
  }
  const [b, d, p] = [await pick(opts.blobServiceAddr), await pick(opts.directoryServiceAddr), await pick(opts.pathInfoServiceAddr)]
  const mixed: Store & WriteSessions = {
    blobs: b.blobs,
    directories: d.directories,
    pathInfos: p.pathInfos,
    storeDir,
    // A session on every store involved (local ones exclude their gc).
    writeSession: <T>(fn: () => Promise<T>) => opened.reduceRight<() => Promise<T>>((inner, s) => () => inWriteSession(s, inner), fn)(),
    close: async () => {
      for (const s of opened) await s.close()
    },
  }
  return mixed
}

async function openOne(url: string, storeDir: string, mustExist = false): Promise<Store> {
  const addr = parseStoreUrl(url)
  switch (addr.kind) {
    case 'memory':
      return (await import('./memory/index.js')).openMemoryStore(storeDir)
    case 'local':
      try {
        return await (await import('./local/index.js')).openLocalStore(addr.path, storeDir, { mustExist })
      } catch (e) {
        // Said when the store is first used: a command's bad arguments are reported first.
        if (e instanceof NotFoundError) return missingStore(e, storeDir)
        throw e
      }
    case 'grpc':
      if (addr.tls) throw new UnsupportedError(`${url}: TLS (grpc+https) is not supported yet; use grpc+http or grpc+unix`)
      return (await import('./grpc/index.js')).openGrpcStore(addr.target, url, storeDir)
  }
}

/** How logs name a store: a local one by its absolute folder, any other by its URL. */
export function storeLabel(url = defaultStoreLocation()): string {
  const addr = parseStoreUrl(url)
  return addr.kind === 'local' ? addr.path : url
}

function normaliseStoreDir(dir: string): string {
  if (!path.isAbsolute(dir)) throw new UsageError(`store dir ${JSON.stringify(dir)} must be an absolute path`)
  const n = path.posix.normalize(dir).replace(/\/+$/, '')
  if (n === '') throw new UsageError('store dir must not be /')
  return n
}

const MISSING = Symbol('missing store')

/**
 * Stands in for a local store that does not exist, opened by a command
 * that only reads: every use of it throws `error` ("no store at …").
 */
function missingStore(error: NotFoundError, storeDir: string): Store {
  const refuse = () => {
    throw error
  }
  // Any method of any service; `then` stays undefined so a service is not taken for a promise.
  const service = new Proxy({}, { get: (_, key) => (key === 'then' ? undefined : refuse) }) as never
  return { blobs: service, directories: service, pathInfos: service, storeDir, writeSession: refuse, close: async () => {}, [MISSING]: error } as Store
}

/**
 * The local store behind `store`, for what runs only where the data lives
 * (gc, verify, GC roots); one clear refusal for any other kind of store.
 */
export async function asLocalStore(store: Store, url: string, what: string): Promise<import('./local/index.js').LocalStore> {
  const { LocalStore } = await import('./local/index.js')
  if (store instanceof LocalStore) return store
  const missing = (store as { [MISSING]?: NotFoundError })[MISSING]
  if (missing) throw missing
  throw new UnsupportedError(`${what} works on a local store only, where the data lives: ${url} is not one (run it on the daemon's machine, against its store directory)`)
}
