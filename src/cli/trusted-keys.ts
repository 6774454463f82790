import { InvalidInputError, UsageError } from '../errors.js'
import { type PublicKey, parsePublicKeys } from '../store/signing.js'

/** `--trusted-public-keys KEYS` (verify, copy): Nix's space-separated `NAME:BASE64` list; a bad key is a usage error, as a bad flag. */
export function parseTrustedKeysFlag(keys: string): PublicKey[] {
  try {
    const trustedKeys = parsePublicKeys(keys)
    if (trustedKeys.length === 0) throw new UsageError('--trusted-public-keys names no key')
    return trustedKeys
  } catch (e) {
    if (e instanceof InvalidInputError) throw new UsageError(`--trusted-public-keys: ${e.message}`, { cause: e })
    throw e
  }
}
