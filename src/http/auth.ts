import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import { UsageError } from '../errors.js'

/** The challenge of a 401: what a browser or curl shows; Nix sends its netrc credentials up front anyway. */
export const BASIC_CHALLENGE = 'Basic realm="tvix-store"'

/** Who may upload (and, for a private cache, read): HTTP Basic credentials checked in constant time. */
export interface Credentials {
  /** Whether an `Authorization` header carries one of the credentials. */
  accepts(authorization: string | undefined): boolean
}

/**
 * Parses an auth file: one `user:password` per line (the password may
 * contain `:`), `:TOKEN` for a token (a netrc line with only `password
 * TOKEN` makes Nix send Basic with an empty user), blank lines and `#`
 * comments ignored. A bad line is named by its number, never echoed: it
 * may hold a secret.
 */
export function parseAuthFile(text: string, file: string): Credentials {
  const digests: Buffer[] = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '')
    if (line.trim() === '' || line.trimStart().startsWith('#')) return
    const colon = line.indexOf(':')
    if (colon < 0 || colon === line.length - 1) throw new UsageError(`--http-auth-file ${file}: line ${i + 1} is not "user:password" or ":token"`)
    digests.push(digest(line))
  })
  if (digests.length === 0) throw new UsageError(`--http-auth-file ${file} holds no credentials (want "user:password" lines)`)
  return {
    accepts(authorization) {
      const given = basicCredentials(authorization)
      if (given === undefined) return false
      const d = digest(given)
      // Every entry is compared, so the time taken says nothing about which one matched, or how closely.
      let ok = false
      for (const want of digests) ok = timingSafeEqual(d, want) || ok
      return ok
    },
  }
}

/** Fixed-length digests: timingSafeEqual needs equal lengths, and the length of a secret is a secret too. */
function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}

/** `user:password` of a `Basic` Authorization header, or undefined for anything else. */
function basicCredentials(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(header)
  return m ? Buffer.from(m[1]!, 'base64').toString('utf8') : undefined
}

/** Whether `host` (from --http-listen) is reachable from this machine only. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  return host === '::1' || /^::ffff:127\./i.test(host)
}

/** Who may do what on the binary cache, from the daemon's flags. */
export interface HttpAccess {
  upload: boolean
  credentials?: Credentials
  private: boolean
}

/** Refuses (UsageError) an upload endpoint other machines can reach without credentials: anyone could write to the store. */
export function httpAccess(host: string, upload: boolean, privateReads: boolean, authFile?: { file: string; text: string }): HttpAccess {
  if (upload && !authFile && !isLoopback(host)) {
    throw new UsageError(`--http-upload on ${host}, which other machines can reach, needs --http-auth-file (else anyone could write to the store)`)
  }
  return { upload, private: privateReads, credentials: authFile && parseAuthFile(authFile.text, authFile.file) }
}
