import fsSync from 'node:fs'
import path from 'node:path'
import type { Directory } from '../../castore/directory.js'
import { decodeDirectory } from '../../castore/proto.js'
import { readSmallFile } from './layout.js'
import { PACK_SUFFIX, readManifest } from './pack.js'

export type ObjectKind = 'blob' | 'pack' | 'dir' | 'pathinfo'

/** One file of the store's object layout. */
export interface StoredObject {
  kind: ObjectKind
  /** Hex BLAKE3 digest (blob, pack, dir) or nixbase32 hash part (pathinfo). */
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
export function listObjects(root: string): Map<string, StoredObject> {
  const out = new Map<string, StoredObject>()
  const add = (kind: ObjectKind, name: string, file: string) => {
    const st = fsSync.lstatSync(file, { throwIfNoEntry: false })
    if (st?.isFile()) out.set(objectKey(kind, name), { kind, name, file, size: st.size, mtimeMs: st.mtimeMs })
  }
  for (const [top, kinds] of [['blobs', true], ['dirs', false]] as const) {
    const base = path.join(root, top, 'b3')
    for (const shard of readdir(base)) {
      for (const n of readdir(path.join(base, shard))) {
        const file = path.join(base, shard, n)
        if (kinds && n.endsWith(PACK_SUFFIX) && HEX64.test(n.slice(0, -PACK_SUFFIX.length))) add('pack', n.slice(0, -PACK_SUFFIX.length), file)
        else if (HEX64.test(n)) add(kinds ? 'blob' : 'dir', n, file)
      }
    }
  }
  const infos = path.join(root, 'pathinfo')
  for (const n of readdir(infos)) if (HASH_PART.test(n)) add('pathinfo', n, path.join(infos, n))
  return out
}

function readdir(dir: string): string[] {
  try {
    return fsSync.readdirSync(dir)
  } catch {
    return []
  }
}

/** A stored Directory, decoded without re-hashing; undefined if absent or undecodable (verify reports those). */
export function readStoredDirectory(file: string): Directory | undefined {
  const bytes = readSmallFile(file)
  if (!bytes) return undefined
  try {
    return decodeDirectory(bytes)
  } catch {
    return undefined
  }
}

/** Hex digests of the other packs a pack borrows chunks from; none if it is absent or its manifest is corrupt. */
export function borrowedPacks(file: string, self: string): string[] {
  let manifest
  try {
    manifest = readManifest(file, self) ?? []
  } catch {
    return []
  }
  return [...new Set(manifest.filter((c) => c.pack !== self).map((c) => c.pack))]
}
