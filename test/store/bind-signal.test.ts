import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { bindSignal } from '../../src/store/bind-signal.js'
import { hasWriteSessions } from '../../src/store/capabilities.js'
import type { Store } from '../../src/store/store.js'
import type { CallOptions } from '../../src/util/call-options.js'
import { hasStaging } from '../../src/castore/blob-service.js'

/** A memory store whose service calls record the signal they got, by method. */
function recording(): { store: Store; seen: Map<string, AbortSignal | undefined> } {
  const store = openMemoryStore()
  const seen = new Map<string, AbortSignal | undefined>()
  const spy = (name: string, obj: object, method: string, at: number) => {
    const o = obj as Record<string, (...a: unknown[]) => unknown>
    const orig = o[method]!.bind(obj)
    o[method] = (...args: unknown[]) => {
      seen.set(name, (args[at] as CallOptions | undefined)?.signal)
      return orig(...args)
    }
  }
  spy('blobs.open', store.blobs, 'open', 1)
  spy('blobs.put', store.blobs, 'put', 1)
  spy('directories.get', store.directories, 'get', 1)
  spy('pathInfos.list', store.pathInfos, 'list', 0)
  const stage = store.blobs.stage.bind(store.blobs)
  store.blobs.stage = () => {
    const s = stage()
    spy('stage.put', s, 'put', 1)
    spy('stage.abort', s, 'abort', 0)
    return s
  }
  return { store, seen }
}

describe('bindSignal', () => {
  test('gives its signal to every service call, stages included, and merges it with the caller\'s', async () => {
    const { store, seen } = recording()
    const ac = new AbortController()
    const bound = bindSignal(store, ac.signal)
    const { digest } = await bound.blobs.put(Buffer.from('hello'))
    await bound.blobs.open(digest)
    await bound.directories.get(digest)
    for await (const _ of bound.pathInfos.list()) void _
    assert.ok(hasStaging(bound.blobs))
    const stage = bound.blobs.stage()
    await stage.put(Buffer.from('x'))
    await stage.abort()
    for (const m of ['blobs.put', 'blobs.open', 'directories.get', 'pathInfos.list', 'stage.put']) assert.equal(seen.get(m), ac.signal, m)
    // The clean-up runs whatever happened: it gets no signal to stop it.
    assert.equal(seen.get('stage.abort'), undefined)

    const own = new AbortController()
    await bound.blobs.open(digest, { signal: own.signal })
    const merged = seen.get('blobs.open')!
    assert.equal(merged.aborted, false)
    ac.abort()
    assert.equal(merged.aborted, true)
  })

  test('leaves everything else the store\'s own', async () => {
    const store = openMemoryStore()
    const withSessions = Object.assign(store, { writeSession: <T>(fn: (view: typeof store) => Promise<T>) => fn(store) })
    const bound = bindSignal(withSessions, new AbortController().signal)
    assert.equal(hasWriteSessions(bound), true)
    assert.equal(bound.storeDir, store.storeDir)
    assert.equal(bound.blobs.size !== undefined, store.blobs.size !== undefined)
    await bound.close()
  })
})
