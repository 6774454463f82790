import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { UsageError } from '../errors.js'

/*
 * The URL forms of the registered backends: each checks a URL and takes
 * out what its backend's `open` needs, without loading the backend (a
 * mistyped URL costs no start-up). A backend with a form of its own adds
 * it here, or in its folder if it is larger than a few lines.
 */

/** What a store URL names: the backend (`kind`, its registry key) and what its form took from the URL. */
export interface StoreAddress {
  kind: string
}

export interface LocalAddress extends StoreAddress {
  kind: 'local'
  path: string
}
export interface MemoryAddress extends StoreAddress {
  kind: 'memory'
}
export interface GrpcAddress extends StoreAddress {
  kind: 'grpc'
  /** In grpc-js syntax: `host:port` or `unix:/abs/socket`. */
  target: string
  tls: boolean
}

/** A URL with a scheme, already split; `scheme` lower-cased. */
export interface SchemeUrl {
  url: string
  scheme: string
  u: URL
}

const quoted = (url: string) => JSON.stringify(url)

function noQuery({ url, u }: SchemeUrl): void {
  if (u.search || u.hash) throw new UsageError(`store URL ${quoted(url)}: unexpected query or fragment`)
}

/** A plain path (relative to the working directory) or `file:///abs`. */
export function localForm(p: SchemeUrl | string): LocalAddress {
  if (typeof p === 'string') return { kind: 'local', path: path.resolve(p) }
  noQuery(p)
  if (p.u.host !== '') throw new UsageError(`store URL ${quoted(p.url)}: file URLs take no host (file:///abs/path)`)
  return { kind: 'local', path: fileURLToPath(p.u) }
}

/** `memory://`: nothing to say but the scheme. */
export function memoryForm(p: SchemeUrl): MemoryAddress {
  noQuery(p)
  if (p.u.host !== '' || (p.u.pathname !== '' && p.u.pathname !== '/')) {
    throw new UsageError(`store URL ${quoted(p.url)}: memory:// takes no host or path`)
  }
  return { kind: 'memory' }
}

/** `grpc+http://HOST:PORT`, `grpc+https://HOST:PORT`, `grpc+unix:///abs/socket`. */
export function grpcForm({ url, scheme, u }: SchemeUrl): GrpcAddress {
  if (scheme === 'grpc+unix') {
    if (u.host !== '' || !u.pathname.startsWith('/')) throw new UsageError(`store URL ${quoted(url)}: want grpc+unix:///absolute/path`)
    return { kind: 'grpc', target: `unix:${decodeURIComponent(u.pathname)}`, tls: false }
  }
  if (u.host === '' || (u.pathname !== '' && u.pathname !== '/')) {
    throw new UsageError(`store URL ${quoted(url)}: want ${scheme}://HOST:PORT with no path`)
  }
  // grpc-js would dial 443, tvix's clients 80: neither is where a daemon listens. Say it rather than guess.
  if (u.port === '') {
    throw new UsageError(`store URL ${quoted(url)} has no port: want ${scheme}://HOST:PORT (\`tvix-store daemon\` listens on port 8000 by default)`)
  }
  return { kind: 'grpc', target: u.host, tls: scheme === 'grpc+https' }
}
