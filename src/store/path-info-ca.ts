import { createHash } from 'node:crypto'
import { bytesEqual } from '../castore/digest.js'
import { InvalidInputError } from '../errors.js'
import { CaHash, type ContentAddress } from './path-info.js'
import { type StorePath, makeStorePath } from './store-path.js'

/** How a CA digest was taken: over the NAR, over a file's bytes (flat), or a text file's bytes. */
export type CaMode = 'nar' | 'flat' | 'text'

export const CA_METHOD: Record<CaHash, { mode: CaMode; algo: 'sha256' | 'sha1' | 'sha512' | 'md5' }> = {
  [CaHash.NAR_SHA256]: { mode: 'nar', algo: 'sha256' },
  [CaHash.NAR_SHA1]: { mode: 'nar', algo: 'sha1' },
  [CaHash.NAR_SHA512]: { mode: 'nar', algo: 'sha512' },
  [CaHash.NAR_MD5]: { mode: 'nar', algo: 'md5' },
  [CaHash.TEXT_SHA256]: { mode: 'text', algo: 'sha256' },
  [CaHash.FLAT_SHA1]: { mode: 'flat', algo: 'sha1' },
  [CaHash.FLAT_MD5]: { mode: 'flat', algo: 'md5' },
  [CaHash.FLAT_SHA256]: { mode: 'flat', algo: 'sha256' },
  [CaHash.FLAT_SHA512]: { mode: 'flat', algo: 'sha512' },
}

/**
 * The store path a content address gives (SPEC 4.3): `source` for a NAR
 * SHA-256 (references and `:self` allowed), `text` (references, no self),
 * else `output:out` over `fixed:out:…` (no references at all).
 * `references` are the other paths' basenames; `self` whether the path
 * refers to itself.
 */
export function caStorePath(ca: ContentAddress, name: string, references: string[], self: boolean, storeDir: string): StorePath {
  const { mode, algo } = CA_METHOD[ca.type]
  const refs = references.map((r) => `${storeDir}/${r}`).sort()
  if (mode === 'nar' && algo === 'sha256') return makeStorePath(['source', ...refs, ...(self ? ['self'] : [])].join(':'), ca.digest, name, storeDir)
  if (mode === 'text') {
    if (self) throw new InvalidInputError('invalid PathInfo: a text path cannot refer to itself')
    return makeStorePath(['text', ...refs].join(':'), ca.digest, name, storeDir)
  }
  if (self || refs.length > 0) throw new InvalidInputError(`invalid PathInfo: a ${mode === 'nar' ? 'recursive' : 'flat'} ${algo} fixed-output path has no references`)
  const inner = createHash('sha256')
    .update(`fixed:out:${mode === 'nar' ? 'r:' : ''}${algo}:${Buffer.from(ca.digest).toString('hex')}:`)
    .digest()
  return makeStorePath('output:out', inner, name, storeDir)
}

/** Does `path` equal what the content address, name and references give? */
export function matchesCa(path: StorePath, ca: ContentAddress, references: string[], self: boolean, storeDir: string): boolean {
  return bytesEqual(caStorePath(ca, path.name, references, self, storeDir).digest, path.digest)
}
