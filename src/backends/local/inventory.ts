import fsSync from 'node:fs'
import { type LocalRoot, packOwner } from './layout.js'

export type ObjectKind = 'blob' | 'pack' | 'bundle' | 'dir' | 'pathinfo'

/** One file of the store's object layout. */
export interface StoredObject {
  kind: ObjectKind
  /** Hex BLAKE3 digest (blob, pack, dir; a bundle's index) or nixbase32 hash part (pathinfo). */
  name: string
  file: string
  size: number
  mtimeMs: number
}

export const objectKey = (kind: ObjectKind, name: string) => `${kind}:${name}`

export const HEX64 = /^[0-9a-f]{64}$/
export const HASH_PART = /^[0-9a-df-np-sv-z]{32}$/

/**
 * Every object file of a local store, keyed by objectKey. Names that are
 * not objects (stray files) are left out: gc never touches what it does
 * not recognise. Files that vanish while listing are skipped.
 */
export function listObjects(root: LocalRoot): Map<string, StoredObject> {
  const out = new Map<string, StoredObject>()
  const add = (kind: ObjectKind, name: string, file: string) => {
    const st = fsSync.lstatSync(file, { throwIfNoEntry: false })
    if (st?.isFile()) out.set(objectKey(kind, name), { kind, name, file, size: st.size, mtimeMs: st.mtimeMs })
  }
  for (const { name: n, file } of root.shardFiles('blobs')) {
    const pack = packOwner(n)
    if (pack !== undefined && HEX64.test(pack)) add('pack', pack, file)
    else if (HEX64.test(n)) add('blob', n, file)
  }
  for (const n of root.bundleNames()) add('bundle', n, root.bundlePath(n))
  for (const { name: n, file } of root.shardFiles('dirs')) if (HEX64.test(n)) add('dir', n, file)
  for (const n of root.pathInfoNames()) if (HASH_PART.test(n)) add('pathinfo', n, root.pathInfoPath(n))
  return out
}
