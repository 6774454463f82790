import { createHash } from 'node:crypto'
import type { BlobService } from '../castore/blob-service.js'
import { type B3Digest, b3Display, bytesEqual, toHex } from '../castore/digest.js'
import { type Directory, directorySize } from '../castore/directory.js'
import { type DirectoryService, wrongFileSize } from '../castore/directory-service.js'
import type { FileNode, Node } from '../castore/node.js'
import { AlreadyExistsError, InvalidInputError, MissingDataError } from '../errors.js'
import { encodeNode } from '../castore/proto.js'
import { forEachLimit } from '../util/pool.js'
import { type CastoreReader, calculateNar, renderNar } from './nar/render.js'
import { DEFAULT_MAX_NAR_SIZE, narSize as treeNarSize } from './nar/size.js'
import * as nixbase32 from './nixbase32.js'
import { CA_METHOD, matchesCa } from './path-info-ca.js'
import type { PathInfoService } from './path-info-service.js'
import { type PathInfo, storePathOf, validatePathInfo } from './path-info.js'
import { type StorePath, absolute } from './store-path.js'
import type { CallOptions } from '../util/call-options.js'

/** Lookups (Directories, blob sizes, references) in flight at once. */
const PARALLEL_LOOKUPS = 32
/**
 * Directories of the tree that requireTree read, kept for the NAR render
 * that checks a content address (so each is read once, not three times:
 * tree check, size bound, render). A larger tree is read again instead:
 * memory stays bounded (a Directory in memory is a few hundred bytes
 * per entry).
 */
const KEPT_DIRECTORIES = 16_384

export interface AdmissionOptions extends CallOptions {
  /**
   * NarHash and NarSize were computed by this process from the very bytes
   * it stored (an import), so a content address is not checked by
   * rendering the NAR again. Never set for a PathInfo from elsewhere.
   */
  narComputedHere?: boolean
}

/**
 * What the admission check reads: the store the PathInfo is put into.
 * A store that answers from local files may offer `getNow` and `sizeNow`,
 * the same lookups without a promise each: the check of a tree of many
 * files then costs its lookups, not a promise and a pool slot per file.
 */
export interface AdmissionStore {
  blobs: Pick<BlobService, 'has' | 'open' | 'size'> & { sizeNow?(digest: B3Digest): number | undefined }
  directories: Pick<DirectoryService, 'get'> & { getNow?(digest: B3Digest): Directory | undefined }
  pathInfos: Pick<PathInfoService, 'get'>
  storeDir: string
}

/**
 * The one check every published PathInfo goes through (publishPathInfo:
 * import, copy, the daemon's Put), against the store's own services,
 * whichever backends serve them. In order: the PathInfo is valid (checkPut);
 * if its path is already stored, the same content is accepted as is (the
 * stored PathInfo is the answer, nothing is written; as Nix's addToStore,
 * signatures are not merged) and different content is refused; its whole
 * tree is stored, each file with the size its node claims; every
 * reference but itself is stored; and a content address gives its store
 * path and agrees with the tree's NAR.
 *
 * The PathInfoService then stores it with no-replace semantics and settles
 * a race with keepStored(), so two concurrent puts cannot both win.
 */
export async function admitPathInfo(info: PathInfo, store: AdmissionStore, opts: AdmissionOptions = {}): Promise<{ path: StorePath; stored?: PathInfo }> {
  const path = checkPut(info)
  const stored = await store.pathInfos.get(path.digest)
  if (stored) return { path, stored: keepStored(stored, info, store.storeDir) }
  const tree = await requireTree(info.node, store)
  await requireReferences(info, path, store)
  if (info.narinfo?.ca) await requireContentAddress(info, path, withDirectories(store, tree), opts)
  return { path }
}

/** `stored` if `info` has the same content (root node, NAR hash and size, references); otherwise the put is refused. */
export function keepStored(stored: PathInfo, info: PathInfo, storeDir: string): PathInfo {
  if (sameContent(stored, info)) return stored
  throw new AlreadyExistsError(`path '${absolute(storePathOf(info), storeDir)}' is already in the store with different content; a stored path is never replaced`)
}

function sameContent(a: PathInfo, b: PathInfo): boolean {
  const refs = (i: PathInfo) => i.references.map((r) => toHex(r)).sort().join()
  return (
    bytesEqual(encodeNode(a.node), encodeNode(b.node)) &&
    a.narinfo?.narSize === b.narinfo?.narSize &&
    bytesEqual(a.narinfo?.narSha256 ?? new Uint8Array(0), b.narinfo?.narSha256 ?? new Uint8Array(0)) &&
    refs(a) === refs(b)
  )
}

/** What every PathInfoService.put checks itself: the PathInfo is valid (SPEC 3.5) and lists each reference once. */
export function checkPut(info: PathInfo): StorePath {
  const path = validatePathInfo(info)
  refuseDuplicateReferences(info)
  return path
}

function refuseDuplicateReferences(info: PathInfo): void {
  const seen = new Set<string>()
  info.references.forEach((r, i) => {
    const key = toHex(r)
    if (seen.has(key)) throw new InvalidInputError(`invalid PathInfo: reference ${i} (${info.narinfo?.referenceNames[i] ?? nixbase32.encode(r)}) is listed twice`)
    seen.add(key)
  })
}

const missing = (what: string) => new MissingDataError(`PathInfo refers to data the store does not have: ${what}`)

/**
 * The whole tree under `node` is stored: each Directory read once (breadth
 * first, a level's reads in parallel), then each distinct blob's size
 * looked up (no data read) against the file nodes naming it. Child
 * Directory sizes were checked when those Directories were stored; the
 * root node's claim is checked here. Returns the tree's Directories by hex
 * digest, all of them, or undefined when there are more than
 * KEPT_DIRECTORIES.
 */
async function requireTree(node: Node, store: AdmissionStore): Promise<Map<string, Directory> | undefined> {
  if (node.kind === 'symlink') return new Map()
  let kept: Map<string, Directory> | undefined = new Map()
  // The first claim on each blob; later claims of another size are checked too.
  const claims = new Map<string, FileNode>()
  const otherClaims: FileNode[] = []
  const claim = (f: FileNode) => {
    const key = toHex(f.digest)
    const first = claims.get(key)
    if (!first) claims.set(key, f)
    else if (first.size !== f.size) otherClaims.push(f)
  }
  if (node.kind === 'file') claim(node)
  else {
    const seen = new Set<string>([toHex(node.digest)])
    const visit = (digest: B3Digest, dir: Directory | undefined, next: B3Digest[]) => {
      if (!dir) throw missing(`directory ${b3Display(digest)}`)
      if (kept && kept.size < KEPT_DIRECTORIES) kept.set(toHex(digest), dir)
      else kept = undefined
      if (digest === node.digest && node.size !== directorySize(dir)) {
        throw new InvalidInputError(`invalid PathInfo: root node claims size ${node.size}, but directory ${b3Display(digest)} has ${directorySize(dir)}`)
      }
      for (const f of dir.files) claim(f)
      for (const c of dir.directories) {
        const key = toHex(c.digest)
        if (seen.has(key)) continue
        seen.add(key)
        next.push(c.digest)
      }
    }
    const { directories } = store
    let level: B3Digest[] = [node.digest]
    while (level.length > 0) {
      const next: B3Digest[] = []
      if (directories.getNow) for (const digest of level) visit(digest, directories.getNow(digest), next)
      else await forEachLimit(level, PARALLEL_LOOKUPS, async (digest) => visit(digest, await directories.get(digest), next))
      level = next
    }
  }
  const sizes = new Map<string, number>()
  const check = (key: string, f: FileNode, size: number | undefined) => {
    if (size === undefined) throw missing(`blob ${b3Display(f.digest)}`)
    const why = wrongFileSize(f, size)
    if (why) throw new InvalidInputError(`invalid PathInfo: ${why}`)
    if (otherClaims.length > 0) sizes.set(key, size)
  }
  const { blobs } = store
  if (blobs.sizeNow) for (const [key, f] of claims) check(key, f, blobs.sizeNow(f.digest))
  else {
    await forEachLimit(claims, PARALLEL_LOOKUPS, async ([key, f]) => {
      check(key, f, blobs.size ? await blobs.size(f.digest) : (await blobs.has(f.digest)) ? f.size : undefined)
    })
  }
  for (const f of otherClaims) {
    const why = wrongFileSize(f, sizes.get(toHex(f.digest))!)
    if (why) throw new InvalidInputError(`invalid PathInfo: ${why}`)
  }
  return kept
}

/**
 * `store` with the tree's Directories answered from `tree` (every one of
 * them: requireTree read and checked them), found without a promise, so
 * the NAR render reads no Directory again. Without `tree`, `store` as is.
 */
function withDirectories(store: AdmissionStore, tree: Map<string, Directory> | undefined): AdmissionStore & CastoreReader {
  if (!tree) return store
  const getNow = (d: B3Digest) => tree.get(toHex(d))
  return { ...store, directories: { getNow, get: async (d, opts) => getNow(d) ?? store.directories.get(d, opts) } }
}

/** Nix's rule: a path may only refer to paths that are valid (or to itself). */
async function requireReferences(info: PathInfo, path: StorePath, store: AdmissionStore): Promise<void> {
  const others = info.references.map((r, i) => ({ r, i })).filter(({ r }) => !bytesEqual(r, path.digest))
  await forEachLimit(others, PARALLEL_LOOKUPS, async ({ r, i }) => {
    if (!(await store.pathInfos.get(r))) {
      throw new MissingDataError(`PathInfo refers to a path the store does not have: ${store.storeDir}/${info.narinfo!.referenceNames[i]}`)
    }
  })
}

/**
 * A content-addressed path is the one its CA, name and references give,
 * and its tree is what the CA and NAR hash say. With `narComputedHere`
 * (an import, which hashed the very bytes it stored) a NAR SHA-256 CA is
 * not rendered again.
 */
async function requireContentAddress(info: PathInfo, path: StorePath, store: AdmissionStore & CastoreReader, opts: AdmissionOptions): Promise<void> {
  const ni = info.narinfo!
  const ca = ni.ca!
  const self = info.references.some((r) => bytesEqual(r, path.digest))
  const others = ni.referenceNames.filter((_, i) => !bytesEqual(info.references[i]!, path.digest))
  if (!matchesCa(path, ca, others, self, store.storeDir)) {
    throw new InvalidInputError(`invalid PathInfo: path '${absolute(path, store.storeDir)}' is not the store path its content address gives`)
  }
  const { mode, algo } = CA_METHOD[ca.type]
  const node = info.node
  if (mode !== 'nar' && (node.kind !== 'file' || node.executable)) {
    throw new InvalidInputError(`invalid PathInfo: a ${mode} content address needs a non-executable file, not ${node.kind === 'file' ? 'an executable' : `a ${node.kind}`}`)
  }
  if (mode === 'nar' && algo === 'sha256' && !bytesEqual(ca.digest, ni.narSha256)) {
    throw new InvalidInputError('invalid PathInfo: the content address and the NAR hash differ')
  }
  const caHashOf = mode === 'nar' && algo !== 'sha256' ? algo : undefined
  if (!opts.narComputedHere || caHashOf) {
    const nar = await renderedNar(node, store, caHashOf, opts.signal)
    if (nar.narSize !== ni.narSize || !bytesEqual(nar.narSha256, ni.narSha256)) {
      throw new InvalidInputError(
        `invalid PathInfo: the tree's NAR has hash sha256:${nixbase32.encode(nar.narSha256)} and size ${nar.narSize}, ` +
          `not the sha256:${nixbase32.encode(ni.narSha256)} and ${ni.narSize} given`,
      )
    }
    if (caHashOf && !bytesEqual(nar.extra!, ca.digest)) throw new InvalidInputError(`invalid PathInfo: the tree's NAR ${algo} is not its content address`)
  }
  if (mode !== 'nar') {
    const h = createHash(algo)
    const blob = await store.blobs.open((node as FileNode).digest, { signal: opts.signal })
    if (!blob) throw missing(`blob ${b3Display((node as FileNode).digest)}`)
    for await (const c of blob) h.update(c)
    if (!bytesEqual(h.digest(), ca.digest)) throw new InvalidInputError(`invalid PathInfo: the file's ${algo} is not its content address`)
  }
}

/**
 * The NAR size and SHA-256 (and, if asked, another hash) of a stored tree:
 * the one place admission renders, so a limit on rendering plugs in here.
 */
async function renderedNar(node: Node, store: AdmissionStore & CastoreReader, extraAlgo?: string, signal?: AbortSignal): Promise<{ narSize: number; narSha256: Uint8Array; extra?: Uint8Array }> {
  // Sized from Directories alone first: a few Directories sharing children can claim terabytes.
  await treeNarSize(node, store, { limit: DEFAULT_MAX_NAR_SIZE, signal })
  if (!extraAlgo) return calculateNar(node, store, { signal })
  const sha = createHash('sha256')
  const extra = createHash(extraAlgo)
  let narSize = 0
  for await (const c of renderNar(node, store, { signal })) {
    sha.update(c)
    extra.update(c)
    narSize += c.length
  }
  return { narSize, narSha256: sha.digest(), extra: extra.digest() }
}
