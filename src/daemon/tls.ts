import tls from 'node:tls'
import { UsageError } from '../errors.js'

/** A server's certificate chain and private key, as PEM. */
export interface TlsPair {
  cert: Buffer
  key: Buffer
}

/**
 * Checks that `cert` and `key` are PEM and belong together (OpenSSL's own
 * check, as the servers will make it), so a wrong file is one error at
 * start, not a failure of every connection. The reason is OpenSSL's words,
 * never the files' content.
 */
export function checkTlsPair(pair: TlsPair, certFile: string, keyFile: string): TlsPair {
  try {
    tls.createSecureContext(pair)
  } catch (e) {
    throw new UsageError(`--tls-cert ${certFile} and --tls-key ${keyFile} cannot serve TLS: ${reasonOf(e as Error)}`, { cause: e })
  }
  return pair
}

/** OpenSSL's reason ("key values mismatch"), without its error-queue frame. */
function reasonOf(e: Error): string {
  const m = /routines?:+(?:[^:]*:)?(.*)$/.exec(e.message)
  return (m?.[1] ?? e.message).trim()
}
