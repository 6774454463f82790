import type { Http2Session } from 'node:http2'
import type { Store, TempRootKind, TempRoots } from '../store/store.js'
import { hasTempRoots } from '../store/capabilities.js'
import { http2StreamOf } from './calls.js'

/** The temp roots of the connection a call came on; undefined where the store keeps none. */
export type RootsOf = (call: object) => TempRoots | undefined

/**
 * One set of temp roots per client connection, released when it closes
 * (Nix's daemon keeps them per client the same way): an upload's calls
 * share a connection, so what its Stats found and its Puts sent outlives
 * each call until its PathInfo is in. If grpc-js hides the session (a
 * future version), calls get none and gc's --grace is the protection, as
 * before.
 */
export function tempRootsPerConnection(store: Store): RootsOf {
  if (!hasTempRoots(store)) return () => undefined
  const make = store.tempRoots.bind(store)
  const bySession = new WeakMap<Http2Session, TempRoots>()
  return (call) => {
    const session = http2StreamOf(call)?.session
    if (!session || session.closed || session.destroyed) return undefined
    let roots = bySession.get(session)
    if (!roots) {
      const made = make()
      session.once('close', () => made.release())
      bySession.set(session, made)
      roots = made
    }
    return roots
  }
}

/**
 * Whether lookup `found` finds the object, holding a temp root on it if so. Absent needs no
 * commit (a local store writes and removes a token file and lists locks/ for one): a sweep
 * only deletes, and what arrives meanwhile the client just sends again. For lookups only:
 * `found` runs twice when the object is there.
 */
export async function foundAndHeld(roots: TempRoots, kind: TempRootKind, name: string, found: () => Promise<boolean>): Promise<boolean> {
  return (await found()) && roots.holdIf(kind, name, found)
}
