import { after, before, describe, test } from 'node:test'
import type { Store } from '../../src/store/store.js'

/** Opens a fresh, empty store; its close() releases everything the backend holds (a daemon, a temp dir). */
export type OpenStore = () => Promise<Store>

/** A fresh store for the enclosing describe (opened before its tests, closed after them). */
export function freshStore(open: OpenStore): () => Store {
  let store: Store | undefined
  before(async () => {
    store = await open()
  })
  after(async () => {
    await store?.close()
  })
  return () => store!
}

/**
 * A capability's contract: runs `tests` on a fresh store when `has` (the
 * capability's guard) says the store offers it, else one skipped test
 * that says why. The store is opened while the suite is built, since
 * node:test decides what runs then.
 */
export function describeCapability<S extends Store>(title: string, open: OpenStore, guard: string, has: (store: Store) => store is S, tests: (store: () => S) => void): void {
  describe(title, async () => {
    const store = await open()
    if (!has(store)) {
      await store.close()
      test(`${guard} is false`, { skip: `this backend does not offer it (${guard} is false)` }, () => {})
      return
    }
    after(() => store.close())
    tests(() => store)
  })
}

/** A value with its bytes as hex and no undefined fields: decoded messages compare equal whatever their byte arrays' class. */
export function canon(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex')
  if (Array.isArray(v)) return v.map(canon)
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).flatMap(([k, x]) => (x === undefined ? [] : [[k, canon(x)]])))
  return v
}
