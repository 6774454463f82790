import { invalidTargetReason } from '../castore/directory.js'
import { B3_LEN, bytesEqual } from '../castore/digest.js'
import type { Node } from '../castore/node.js'
import { InvalidInputError } from '../errors.js'
import { type StorePath, DIGEST_LEN, invalidStorePathNameReason, parseBasename } from './store-path.js'

/** Hash algorithm and mode of a content address (SPEC 1.4, same numbering as the proto enum). */
export enum CaHash {
  NAR_SHA256 = 0,
  NAR_SHA1 = 1,
  NAR_SHA512 = 2,
  NAR_MD5 = 3,
  TEXT_SHA256 = 4,
  FLAT_SHA1 = 5,
  FLAT_MD5 = 6,
  FLAT_SHA256 = 7,
  FLAT_SHA512 = 8,
}

export interface ContentAddress {
  type: CaHash
  digest: Uint8Array
}

export interface Signature {
  name: string
  data: Uint8Array
}

export interface NarInfo {
  narSize: number
  narSha256: Uint8Array
  signatures: Signature[]
  /** Basenames of the references, same order as PathInfo.references. */
  referenceNames: string[]
  /** The deriver, its name without the trailing `.drv`. */
  deriver?: StorePath
  ca?: ContentAddress
}

/** A store path's root node (named with its basename), references and NAR metadata. */
export interface PathInfo {
  node: Node
  references: Uint8Array[]
  narinfo?: NarInfo
}

/** Digest lengths per CaHash, in enum order. */
export const CA_DIGEST_LEN: Record<CaHash, number> = {
  [CaHash.NAR_SHA256]: 32,
  [CaHash.NAR_SHA1]: 20,
  [CaHash.NAR_SHA512]: 64,
  [CaHash.NAR_MD5]: 16,
  [CaHash.TEXT_SHA256]: 32,
  [CaHash.FLAT_SHA1]: 20,
  [CaHash.FLAT_MD5]: 16,
  [CaHash.FLAT_SHA256]: 32,
  [CaHash.FLAT_SHA512]: 64,
}

export function storePathOf(info: PathInfo): StorePath {
  return parseBasename(Buffer.from(info.node.name).toString('utf8'))
}

function invalid(msg: string): InvalidInputError {
  return new InvalidInputError(`invalid PathInfo: ${msg}`)
}

/** SPEC 3.5. Returns the store path the PathInfo is for. */
export function validatePathInfo(info: PathInfo): StorePath {
  info.references.forEach((r, i) => {
    if (r.length !== DIGEST_LEN) throw invalid(`reference ${i} has ${r.length} bytes, want ${DIGEST_LEN}`)
  })
  const ni = info.narinfo
  if (!ni) throw invalid('narinfo is missing')
  if (ni.referenceNames.length !== info.references.length) {
    throw invalid(`${info.references.length} references but ${ni.referenceNames.length} reference names`)
  }
  ni.referenceNames.forEach((n, i) => {
    let p: StorePath
    try {
      p = parseBasename(n)
    } catch (e) {
      throw invalid(`reference name ${i}: ${(e as Error).message}`)
    }
    if (!bytesEqual(p.digest, info.references[i]!)) throw invalid(`reference name ${JSON.stringify(n)} does not match reference ${i}`)
  })
  if (ni.narSha256.length !== 32) throw invalid(`nar_sha256 has ${ni.narSha256.length} bytes, want 32`)
  if (ni.deriver) {
    if (ni.deriver.digest.length !== DIGEST_LEN) throw invalid('deriver digest is not 20 bytes')
    const why = invalidStorePathNameReason(ni.deriver.name)
    if (why) throw invalid(`deriver: ${why}`)
  }
  ni.signatures.forEach((s, i) => {
    if (s.data.length !== 64) throw invalid(`signature ${i} has ${s.data.length} bytes, want 64`)
  })
  if (ni.ca) {
    const want = CA_DIGEST_LEN[ni.ca.type]
    if (want === undefined) throw invalid(`unknown CA hash type ${ni.ca.type}`)
    if (ni.ca.digest.length !== want) throw invalid(`CA digest has ${ni.ca.digest.length} bytes, want ${want}`)
  }
  const node = info.node
  if (node.kind === 'symlink') {
    const why = invalidTargetReason(node.target)
    if (why) throw invalid(why)
  } else if (node.digest.length !== B3_LEN) {
    throw invalid(`root node digest has ${node.digest.length} bytes, want ${B3_LEN}`)
  }
  try {
    return storePathOf(info)
  } catch (e) {
    throw invalid(`root node name: ${(e as Error).message}`)
  }
}
