import fsSync from 'node:fs'
import { BackendError, NoSpaceError, isNoSpace, systemMessage } from '../../errors.js'

/**
 * The one place where the local backend's I/O failures become store
 * errors. A raw `ENOTDIR: not a directory, open '…'` says neither which
 * store failed nor that it is the store's fault, and under --json it came
 * out as ERR_INTERNAL; every failure of a system call that leaves the
 * backend is a BackendError naming the store and the path, with the
 * original as `cause` (a full disk a NoSpaceError, as before).
 */

/** Errors of the caller's own input (a source read that failed): not the store's, so passed on as they are. */
const foreign = new WeakSet<object>()

/** Node's error for a failed system call (it has a syscall and an E… code). */
function isSystemError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).syscall === 'string' && /^E[A-Z0-9]+$/.test(String((e as NodeJS.ErrnoException).code))
}

/** `e` as the store at `dir` reports it: a system call's failure wrapped, anything else (our errors, bugs, the caller's input) as it is. */
export function storeFailure(e: unknown, dir: string): unknown {
  if (e instanceof Error && foreign.has(e)) return e
  if (isNoSpace(e)) return e instanceof NoSpaceError ? e : new NoSpaceError(`no space left on device while writing to the store at ${dir}`, { cause: e })
  if (!isSystemError(e)) return e
  const where = e.path ? `${e.syscall} ${e.path}` : e.syscall
  return new BackendError(`I/O error in the store at ${dir}: ${where}: ${systemMessage(e)}`, { cause: e })
}

/**
 * Names the file an fd-based call failed on (read(2) on a descriptor
 * reports no path); for the catch of the few helpers that hold one.
 */
export function onFile(e: unknown, file: string): unknown {
  if (isSystemError(e) && !e.path) e.path = file
  return e
}

/** `read` of a descriptor open on `file` (closed after), or undefined if there is no such file: a store's index files (bundles, packs, catalogs). */
export function readIfPresent<T>(file: string, read: (fd: number) => T): T | undefined {
  let fd: number
  try {
    fd = fsSync.openSync(file, 'r')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw onFile(e, file)
  }
  try {
    return read(fd)
  } finally {
    fsSync.closeSync(fd)
  }
}

/** The caller's byte or Directory source, its failures marked as not the store's. */
export async function* callerInput<T>(src: AsyncIterable<T> | Iterable<T>): AsyncGenerator<T> {
  try {
    yield* src
  } catch (e) {
    if (e instanceof Error) foreign.add(e)
    throw e
  }
}

/**
 * Puts every method of `target` (a service of the local store) behind
 * storeFailure: what it throws, rejects with, or fails with while its
 * result is iterated; a stage it hands out (an object with methods of its
 * own) is guarded the same way. Applied once per object, where the store
 * builds it, instead of a try/catch in every method.
 */
export function guardStoreIo<T extends object>(target: T, dir: string): T {
  const fail = (e: unknown) => {
    throw storeFailure(e, dir)
  }
  const guard = (result: unknown): unknown => {
    if (result instanceof Promise) return result.then(guard, fail)
    if (result && typeof result === 'object') {
      if (Symbol.asyncIterator in result) return guardIteration(result as AsyncIterable<unknown>, fail)
      // A stage: a plain object of methods (not data: a Directory, a PathInfo, bytes).
      if (Object.getPrototypeOf(result) === Object.prototype && Object.values(result).some((v) => typeof v === 'function')) return guardStoreIo(result, dir)
    }
    return result
  }
  const methods = new Map<string, (...args: unknown[]) => unknown>()
  const collect = (o: object) => {
    for (const [name, d] of Object.entries(Object.getOwnPropertyDescriptors(o))) {
      if (name !== 'constructor' && typeof d.value === 'function' && !methods.has(name)) methods.set(name, d.value)
    }
  }
  collect(target)
  for (let p = Object.getPrototypeOf(target); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) collect(p)
  const self = target as Record<string, unknown>
  for (const [name, method] of methods) {
    self[name] = function (this: unknown, ...args: unknown[]) {
      try {
        return guard(method.apply(this, args))
      } catch (e) {
        return fail(e)
      }
    }
  }
  return target
}

async function* guardIteration<T>(it: AsyncIterable<T>, fail: (e: unknown) => never): AsyncGenerator<T> {
  try {
    yield* it
  } catch (e) {
    fail(e)
  }
}
