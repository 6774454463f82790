import type { CallOptions } from '../util/call-options.js'
import type { Store } from './store.js'

/**
 * Where each service method takes its CallOptions (argument index), and
 * what a method returns that takes them too (a stage). `abort()` of a
 * stage is left out: it is the clean-up, and must run even when the
 * signal has aborted.
 */
interface Calls {
  [method: string]: number | { at: number; returns: Calls }
}
const BLOB_STAGE: Calls = { put: 1, commit: 0 }
const DIRECTORY_STAGE: Calls = { put: 2, commit: 0 }
const SERVICES: Record<'blobs' | 'directories' | 'pathInfos', Calls> = {
  blobs: { has: 1, open: 1, readWhole: 2, readMany: 2, put: 1, chunks: 1, size: 1, stage: { at: 0, returns: BLOB_STAGE } },
  directories: { get: 1, getClosure: 1, getClosureEncoded: 1, putClosure: 1, stage: { at: 0, returns: DIRECTORY_STAGE } },
  pathInfos: { get: 1, put: 1, list: 0, referrers: 1 },
}

/**
 * `store` with `signal` given to every service call (merged with a signal
 * the caller passes): how an interrupted command stops the store work of
 * whatever op it runs, without every op threading the signal through.
 * Proxies, so every other member (capabilities such as gc, optional
 * service methods) is the store's own, unchanged; a write session's view
 * of the store is bound to `signal` too.
 */
export function bindSignal(store: Store, signal: AbortSignal): Store {
  const services = new Map<PropertyKey, unknown>()
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target)
      if (prop === 'writeSession' && typeof value === 'function') {
        return <T>(fn: (view: Store) => Promise<T>) => value.call(target, (view: Store) => fn(bindSignal(view, signal)))
      }
      if (!(prop in SERVICES) || typeof value !== 'object' || value === null) return typeof value === 'function' ? value.bind(target) : value
      if (!services.has(prop)) services.set(prop, bound(value, SERVICES[prop as keyof typeof SERVICES], signal))
      return services.get(prop)
    },
  })
}

function bound<T extends object>(service: T, calls: Calls, signal: AbortSignal): T {
  const withSignal = signalMerger(signal)
  return new Proxy(service, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target)
      const call = typeof prop === 'string' ? calls[prop] : undefined
      if (typeof value !== 'function') return value
      if (call === undefined) return value.bind(target)
      const { at, returns } = typeof call === 'number' ? { at: call, returns: undefined } : call
      return (...args: unknown[]) => {
        args[at] = withSignal(args[at] as CallOptions | undefined)
        const result = value.apply(target, args)
        return returns ? bound(result, returns, signal) : result
      }
    },
  })
}

/**
 * Gives call options `signal`, merged with the caller's own. A caller that
 * passes one signal to thousands of calls (a tree read ahead: a blob Read
 * per file) gets one merged signal for all of them: AbortSignal.any per
 * call was a tenth of such a read's CPU (each new signal is registered
 * with both sources until GC collects it).
 */
function signalMerger(signal: AbortSignal): (opts: CallOptions | undefined) => CallOptions {
  const merged = new WeakMap<AbortSignal, AbortSignal>()
  return (opts) => {
    if (!opts?.signal || opts.signal === signal) return { ...opts, signal }
    let both = merged.get(opts.signal)
    if (!both) merged.set(opts.signal, (both = AbortSignal.any([opts.signal, signal])))
    return { ...opts, signal: both }
  }
}
