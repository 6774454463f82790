import type { LocalStore } from '../backends/local/index.js'
import { validateRootName } from '../backends/local/roots.js'
import { absolute } from '../store/store-path.js'
import { getPathInfo } from './resolve.js'
import { inWriteSession } from '../store/capabilities.js'

export interface RootEntry {
  name: string
  /** The store path it keeps alive; undefined if its file is unreadable. */
  path?: string
  /** False when the store no longer has that path (e.g. `verify --repair` removed it). */
  valid: boolean
}

/**
 * Points the GC root `name` at a store path the store has. Runs in a
 * write session, so gc cannot delete the path between the check and the
 * root being written; callers that just registered the path call it
 * inside their own session.
 */
export async function addRoot(store: LocalStore, name: string, storePath: string): Promise<RootEntry> {
  validateRootName(name)
  return inWriteSession(store, async () => {
    const { storePath: p } = await getPathInfo(store, storePath)
    await store.roots.add(name, p)
    return { name, path: absolute(p, store.storeDir), valid: true }
  })
}

export async function listRoots(store: LocalStore): Promise<RootEntry[]> {
  const out: RootEntry[] = []
  for (const r of store.roots.list()) {
    const info = r.path && (await store.pathInfos.get(r.path.digest))
    out.push({ name: r.name, path: r.path && absolute(r.path, store.storeDir), valid: !!info })
  }
  return out
}


/** Removes the GC roots `names`, in order; returns each as it was (the path it kept alive). */
export async function removeRoots(store: LocalStore, names: string[]): Promise<RootEntry[]> {
  const before = new Map((await listRoots(store)).map((r) => [r.name, r]))
  for (const name of names) await store.roots.remove(name)
  return names.map((name) => before.get(name) ?? { name, valid: false })
}
