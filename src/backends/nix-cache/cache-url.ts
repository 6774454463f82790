import path from 'node:path'
import { UsageError } from '../../errors.js'

/**
 * Where a Nix binary cache lives: a folder (`nix+file:///abs/dir`) or an
 * HTTP base URL (`http(s)://…`, `nix+http(s)://…`, the `nix+` prefix only
 * saying "a Nix cache" explicitly), with Nix's store URL parameters
 * (`?compression=xz&secret-key=/path&write-nar-listing=true&priority=N`).
 */
export type CacheLocation = { kind: 'file'; dir: string } | { kind: 'http'; base: URL }

export interface CacheUrl {
  location: CacheLocation
  /** The URL as given, without its parameters: what messages name. */
  display: string
  params: URLSearchParams
}

export const CACHE_SCHEMES = ['http', 'https', 'nix+http', 'nix+https', 'nix+file'] as const

export function isCacheUrl(url: string): boolean {
  return CACHE_SCHEMES.some((s) => url.startsWith(`${s}://`))
}

export function parseCacheUrl(url: string): CacheUrl {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new UsageError(`invalid binary cache URL ${JSON.stringify(url)}`)
  }
  const scheme = u.protocol.slice(0, -1)
  const params = new URLSearchParams(u.search)
  u.search = ''
  u.hash = ''
  if (scheme === 'nix+file') {
    if (u.host !== '' || !path.isAbsolute(decodeURIComponent(u.pathname))) throw new UsageError(`${JSON.stringify(url)}: a cache folder is nix+file:///absolute/dir`)
    const dir = decodeURIComponent(u.pathname).replace(/\/+$/, '') || '/'
    return { location: { kind: 'file', dir }, display: `nix+file://${dir}`, params }
  }
  if (!['http', 'https', 'nix+http', 'nix+https'].includes(scheme)) throw new UsageError(`${JSON.stringify(url)} is not a binary cache URL (${CACHE_SCHEMES.map((s) => `${s}://`).join(', ')})`)
  const base = new URL(u.href.replace(/^nix\+/, ''))
  // Relative names (`nix-cache-info`, `nar/…`) resolve below the cache's path, never beside it.
  if (!base.pathname.endsWith('/')) base.pathname += '/'
  // Messages name the cache, never its credentials (`http://user:pass@host`).
  const shown = new URL(u.href)
  shown.username = ''
  shown.password = ''
  return { location: { kind: 'http', base }, display: shown.href.replace(/\/$/, ''), params }
}
