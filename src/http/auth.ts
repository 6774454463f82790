import { UsageError } from '../errors.js'
import { isLoopback } from '../daemon/listen.js'
import { SecretSet } from '../util/secret-set.js'

export { isLoopback }

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
export function parseAuthFile(text: string, file: string): BasicCredentials {
  const known = new SecretSet<true>()
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '')
    if (line.trim() === '' || line.trimStart().startsWith('#')) return
    const colon = line.indexOf(':')
    if (colon < 0 || colon === line.length - 1) throw new UsageError(`--http-auth-file ${file}: line ${i + 1} is not "user:password" or ":token"`)
    known.add(line, true)
  })
  if (known.size === 0) throw new UsageError(`--http-auth-file ${file} holds no credentials (want "user:password" lines)`)
  return new BasicCredentials(known)
}

/** `user:password` lines of an auth file; replaceable while serving (SIGHUP). */
export class BasicCredentials implements Credentials {
  constructor(private readonly known: SecretSet<true>) {}

  accepts(authorization: string | undefined): boolean {
    const given = basicCredentials(authorization)
    return given !== undefined && this.known.find(given) === true
  }

  replaceWith(other: BasicCredentials): void {
    this.known.replaceWith(other.known)
  }
}

/** `user:password` of a `Basic` Authorization header, or undefined for anything else. */
function basicCredentials(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(header)
  return m ? Buffer.from(m[1]!, 'base64').toString('utf8') : undefined
}

/** Who may do what on the binary cache, from the daemon's flags. */
export interface HttpAccess {
  upload: boolean
  credentials?: BasicCredentials
  private: boolean
}

/** Refuses (UsageError) an upload endpoint other machines can reach without credentials, unless `anyone` (--insecure-allow-anyone): anyone could write to the store. */
export function httpAccess(host: string, upload: boolean, privateReads: boolean, authFile?: { file: string; text: string }, anyone = false): HttpAccess {
  if (upload && !authFile && !isLoopback(host) && !anyone) {
    throw new UsageError(`--http-upload on ${host}, which other machines can reach, needs --http-auth-file (else anyone could write to the store; --insecure-allow-anyone to allow it)`)
  }
  return { upload, private: privateReads, credentials: authFile && parseAuthFile(authFile.text, authFile.file) }
}
