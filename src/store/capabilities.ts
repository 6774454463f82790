import type { Store, TempRoots } from './store.js'

/*
 * What only some stores can do, as optional interfaces with type guards:
 * callers ask the store, never its class, so a combinator (a cache in
 * front of a far store) can offer what its parts offer.
 */

/** A store whose gc must not sweep what a write in progress found stored. */
export interface WriteSessions {
  /**
   * Runs `fn` as one write session: gc waits for open sessions and holds
   * new ones off while it sweeps, so what a session found stored stays
   * stored until it has registered what relies on it.
   */
  writeSession<T>(fn: () => Promise<T>): Promise<T>
}

export function hasWriteSessions(store: Store): store is Store & WriteSessions {
  return typeof (store as Partial<WriteSessions>).writeSession === 'function'
}

/** Runs `fn` in a write session where the store has them, else just runs it (nothing to exclude). */
export function inWriteSession<T>(store: Store, fn: () => Promise<T>): Promise<T> {
  return hasWriteSessions(store) ? store.writeSession(fn) : fn()
}

/** A store that keeps what one daemon client was told is stored from gc, per client. */
export interface TempRootsCapable {
  tempRoots(): TempRoots
}

export function hasTempRoots(store: Store): store is Store & TempRootsCapable {
  return typeof (store as Partial<TempRootsCapable>).tempRoots === 'function'
}
