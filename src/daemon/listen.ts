import fs from 'node:fs'
import net from 'node:net'
import { dirname } from 'node:path'
import { NotFoundError, UsageError } from '../errors.js'

/** Where the daemon listens: a TCP host:port or a unix socket path. */
export type ListenAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string }

export const DEFAULT_LISTEN = '[::1]:8000'

/**
 * Longest unix socket path the system takes: sun_path holds 108 bytes with
 * the terminating NUL. bind(2) silently truncates a longer one, so the
 * daemon would listen somewhere else than it says.
 */
const MAX_SOCKET_PATH = 107

/** Parses `host:port`, `[v6]:port` or `unix:/path/to.sock`. */
export function parseListen(s: string): ListenAddress {
  if (s.startsWith('unix:')) {
    const p = s.slice('unix:'.length).replace(/^\/\/(?=\/)/, '')
    if (!p.startsWith('/')) throw new UsageError(`--listen ${JSON.stringify(s)}: want unix:/absolute/path`)
    const bytes = Buffer.byteLength(p)
    if (bytes > MAX_SOCKET_PATH) {
      throw new UsageError(`--listen ${JSON.stringify(s)}: a unix socket path can have at most ${MAX_SOCKET_PATH} bytes, this one has ${bytes}`)
    }
    return { kind: 'unix', path: p }
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s)
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) throw new UsageError(`--listen ${JSON.stringify(s)}: want HOST:PORT, [IPV6]:PORT or unix:/path`)
  return { kind: 'tcp', host: m[1] ?? m[2]!, port }
}

/** The address in grpc-js's bind syntax. */
export function bindTarget(a: ListenAddress, port = a.kind === 'tcp' ? a.port : 0): string {
  if (a.kind === 'unix') return `unix:${a.path}`
  return a.host.includes(':') ? `[${a.host}]:${port}` : `${a.host}:${port}`
}

/** The store URL a client would use for this address. */
export function clientUrl(a: ListenAddress, port?: number): string {
  return a.kind === 'unix' ? `grpc+unix://${a.path}` : `grpc+http://${bindTarget(a, port)}`
}

/**
 * Removes a socket file left by a daemon that died, but refuses to take
 * over a socket something still answers on. A missing folder is named as
 * such: libuv reports it from bind(2) as EACCES.
 */
export async function clearStaleSocket(path: string): Promise<void> {
  const st = fs.lstatSync(path, { throwIfNoEntry: false })
  if (!st) {
    const dir = dirname(path)
    if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new NotFoundError(`cannot listen on unix:${path}: its folder ${dir} does not exist`)
    return
  }
  if (!st.isSocket()) throw new UsageError(`${path} exists and is not a socket`)
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(path)
    c.once('connect', () => {
      c.destroy()
      resolve(true)
    })
    c.once('error', () => resolve(false))
  })
  if (alive) throw new UsageError(`${path} is in use by another process`)
  fs.rmSync(path, { force: true })
}
