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

/**
 * The daemon's certificate and key, replaceable while it runs (SIGHUP after
 * a renewal): each TLS server subscribes, and new handshakes use the new
 * pair; connections already open keep theirs.
 */
export class TlsIdentity {
  private readonly listeners = new Set<(pair: TlsPair) => void>()

  constructor(private pair: TlsPair) {}

  get current(): TlsPair {
    return this.pair
  }

  /** Calls `listener` with every later pair; returns its unsubscribe. */
  onReplace(listener: (pair: TlsPair) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** A pair checked by checkTlsPair. */
  replace(pair: TlsPair): void {
    this.pair = pair
    for (const l of this.listeners) l(pair)
  }
}
