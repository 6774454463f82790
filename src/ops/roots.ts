import { type GcRootsCapable, hasGcRoots, inWriteSession, validateRootName } from '../store/capabilities.js'
import { absolute } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { type Caller, requireCapability } from './require-capability.js'
import { getPathInfo } from './resolve.js'

export interface RootEntry {
  name: string
  /** The store path it keeps alive; undefined if its file is unreadable. */
  path?: string
  /** False when the store no longer has that path (e.g. `verify --repair` removed it). */
  valid: boolean
}

/** The store as one with GC roots, or one UnsupportedError: callers check before doing any work. */
export function rootKeeper(store: Store, caller: Caller = {}): Store & GcRootsCapable {
  return requireCapability(store, hasGcRoots, 'keep GC roots', { what: 'roots', ...caller })
}

/**
 * Points the GC root `name` at a store path the store has. Runs in a
 * write session, so gc cannot delete the path between the check and the
 * root being written; callers that just registered the path call it
 * inside their own session.
 */
export async function addRoot(store: Store, name: string, storePath: string, caller: Caller = {}): Promise<RootEntry> {
  rootKeeper(store, caller)
  validateRootName(name)
  return inWriteSession(store, async (store) => {
    const { storePath: p } = await getPathInfo(store, storePath)
    await rootKeeper(store, caller).roots.add(name, p)
    return { name, path: absolute(p, store.storeDir), valid: true }
  })
}

export async function listRoots(store: Store, caller: Caller = {}): Promise<RootEntry[]> {
  const keeper = rootKeeper(store, caller)
  const out: RootEntry[] = []
  for (const r of await keeper.roots.list()) {
    const info = r.path && (await store.pathInfos.get(r.path.digest))
    out.push({ name: r.name, path: r.path && absolute(r.path, store.storeDir), valid: !!info })
  }
  return out
}


/** Removes the GC roots `names`, in order; returns each as it was (the path it kept alive). */
export async function removeRoots(store: Store, names: string[], caller: Caller = {}): Promise<RootEntry[]> {
  const keeper = rootKeeper(store, caller)
  const before = new Map((await listRoots(store)).map((r) => [r.name, r]))
  for (const name of names) await keeper.roots.remove(name)
  return names.map((name) => before.get(name) ?? { name, valid: false })
}
