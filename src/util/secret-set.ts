import { createHash, timingSafeEqual } from 'node:crypto'

/**
 * Secrets (passwords, tokens) matched in constant time: each is kept as a
 * fixed-length digest (timingSafeEqual needs equal lengths, and the length
 * of a secret is a secret too), and every entry is compared, so the time
 * taken says nothing about which one matched, or how closely.
 */
export class SecretSet<T> {
  private entries: Array<{ digest: Buffer; value: T }> = []

  get size(): number {
    return this.entries.length
  }

  add(secret: string, value: T): void {
    this.entries.push({ digest: secretDigest(secret), value })
  }

  /** Takes `other`'s secrets in place of its own (a reloaded file), at once for every later find. */
  replaceWith(other: SecretSet<T>): void {
    this.entries = other.entries
  }

  /** The value added with `given`, or undefined. */
  find(given: string): T | undefined {
    const d = secretDigest(given)
    let found: T | undefined
    for (const e of this.entries) if (timingSafeEqual(d, e.digest) && found === undefined) found = e.value
    return found
  }
}

function secretDigest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}
