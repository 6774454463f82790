import type { ClientSecurity } from '../backends/open-store.js'
import { UsageError } from '../errors.js'
import { readKeyFile } from './key-file.js'

/** The environment variable holding a daemon token itself (--auth-token-file names a file). */
export const TOKEN_ENV = 'TVIX_STORE_TOKEN'

/**
 * What a client trusts and presents, from --tls-ca, --auth-token-file and
 * TVIX_STORE_TOKEN; files are read only when given. A token is never shown
 * in a message, only where it came from.
 */
export function clientSecurity(flags: { 'tls-ca'?: string; 'auth-token-file'?: string }, env = process.env): ClientSecurity {
  const caFile = flags['tls-ca']
  const tokenFile = flags['auth-token-file']
  const tlsCa = caFile === undefined ? undefined : Buffer.from(readKeyFile(caFile, 'TLS CA file'))
  if (tlsCa && !tlsCa.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--tls-ca ${caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`)
  const token = tokenFile !== undefined ? checkedToken(readKeyFile(tokenFile, 'token file'), `--auth-token-file ${tokenFile}`) : env[TOKEN_ENV] ? checkedToken(env[TOKEN_ENV], TOKEN_ENV) : undefined
  return { tlsCa, token }
}

/** The token of a file or variable: one line, characters a header can carry. */
function checkedToken(text: string, source: string): string {
  const token = text.trim()
  if (!/^[\x21-\x7e]+$/.test(token)) throw new UsageError(`${source}: want one token of printable ASCII without spaces`)
  return token
}
