import fs from 'node:fs'
import net, { isIP } from 'node:net'
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

/** Parses `host:port`, `[v6]:port` or (unless `tcpOnly`) `unix:/path/to.sock`; `flag` names the option in messages. */
export function parseListen(s: string, flag = 'listen', tcpOnly = false): ListenAddress {
  const forms = tcpOnly ? 'HOST:PORT or [IPV6]:PORT' : 'HOST:PORT, [IPV6]:PORT or unix:/path'
  if (s.startsWith('unix:') && !tcpOnly) {
    const p = s.slice('unix:'.length).replace(/^\/\/(?=\/)/, '')
    if (!p.startsWith('/')) throw new UsageError(`--${flag} ${JSON.stringify(s)}: want unix:/absolute/path`)
    const bytes = Buffer.byteLength(p)
    if (bytes > MAX_SOCKET_PATH) {
      throw new UsageError(`--${flag} ${JSON.stringify(s)}: a unix socket path can have at most ${MAX_SOCKET_PATH} bytes, this one has ${bytes}`)
    }
    return { kind: 'unix', path: p }
  }
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s)
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) throw new UsageError(`--${flag} ${JSON.stringify(s)}: want ${forms}`)
  return { kind: 'tcp', host: m[1] ?? m[2]!, port }
}

/** The address in grpc-js's bind syntax. */
export function bindTarget(a: ListenAddress, port = a.kind === 'tcp' ? a.port : 0): string {
  if (a.kind === 'unix') return `unix:${a.path}`
  return a.host.includes(':') ? `[${a.host}]:${port}` : `${a.host}:${port}`
}

/** The store URL a client would use for this address (a unix socket is never served with TLS). */
export function clientUrl(a: ListenAddress, port?: number, tls = false): string {
  return a.kind === 'unix' ? `grpc+unix://${a.path}` : `grpc+${tls ? 'https' : 'http'}://${bindTarget(a, port)}`
}

/** Whether `host` (of --listen or --http-listen) is reachable from this machine only. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  return host === '::1' || /^::ffff:127\./i.test(host)
}

/** Whether other machines can connect: TCP beyond loopback (a unix socket is guarded by its file's permissions). */
export function reachableFromElsewhere(a: ListenAddress): boolean {
  return a.kind === 'tcp' && !isLoopback(a.host)
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

/**
 * Why a bind failed, in words. grpc-js wraps the system's reason ("No address
 * added out of total 1 resolved errors: [listen EADDRINUSE: …]"), node:http
 * gives it bare ("listen EADDRINUSE: …"): the reason alone.
 */
export function bindFailure(err: Error): string {
  if (/\bEADDRINUSE\b/.test(err.message)) return 'the address is already in use (another daemon?)'
  if (/\bEACCES\b/.test(err.message)) return 'permission denied'
  if (/\bEADDRNOTAVAIL\b/.test(err.message)) return 'no such address on this machine'
  return err.message
}
