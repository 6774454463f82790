import type { ClientSecurity } from '../backends/open-store.js'
import { UsageError } from '../errors.js'
import { readKeyFile } from './key-file.js'

/** The environment variable holding a daemon token itself (--auth-token-file names a file). */
export const TOKEN_ENV = 'TVIX_STORE_TOKEN'

/** A system's whole CA bundle is ~200 KiB. */
const MAX_CA_FILE = 16 << 20

/** Where Nix reads its CA certificates from, in its order: one names the whole trusted set. */
const NIX_CA_VARIABLES = ['NIX_SSL_CERT_FILE', 'SSL_CERT_FILE'] as const

/**
 * What a client trusts and presents, from --tls-ca (or, as Nix does,
 * $NIX_SSL_CERT_FILE, else $SSL_CERT_FILE: a machine set up for Nix with a
 * private CA works as is), --auth-token-file and TVIX_STORE_TOKEN. Files are
 * read only when given, a CA file only when a TLS connection needs it. A
 * token is never shown in a message, only where it came from.
 */
export function clientSecurity(flags: { 'tls-ca'?: string; 'auth-token-file'?: string }, env = process.env): ClientSecurity {
  const caFlag = flags['tls-ca']
  const caVariable = NIX_CA_VARIABLES.find((v) => env[v])
  const [caFile, caSource] = caFlag !== undefined ? [caFlag, '--tls-ca'] : caVariable ? [env[caVariable]!, `$${caVariable}`] : []
  const tokenFile = flags['auth-token-file']
  const token = tokenFile !== undefined ? checkedToken(readKeyFile(tokenFile, 'token file'), `--auth-token-file ${tokenFile}`) : env[TOKEN_ENV] ? checkedToken(env[TOKEN_ENV], TOKEN_ENV) : undefined
  // A flag's file is checked now (a usage error before anything runs); a variable's only if TLS is used.
  let tlsCa = caFlag === undefined ? undefined : readCaFile(caFile!, caSource!)
  return {
    get tlsCa() {
      return (tlsCa ??= caFile === undefined ? undefined : readCaFile(caFile, caSource!))
    },
    token,
  }
}

function readCaFile(file: string, source: string): Buffer {
  const pem = Buffer.from(readKeyFile(file, source === '--tls-ca' ? 'TLS CA file' : `TLS CA file (from ${source})`, MAX_CA_FILE))
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`${source} ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`)
  return pem
}

/** The token of a file or variable: one line, characters a header can carry. */
function checkedToken(text: string, source: string): string {
  const token = text.trim()
  if (!/^[\x21-\x7e]+$/.test(token)) throw new UsageError(`${source}: want one token of printable ASCII without spaces`)
  return token
}
