import { getSystemErrorMap } from 'node:util'

/**
 * Error classes shared by every layer. Each carries a stable `code` for
 * scripts (`--json`) and the process exit code the CLI should use.
 */
export abstract class StoreError extends Error {
  abstract readonly code: string
  readonly exitCode: number = 1

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }

  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message }
  }
}

/** Bad flag, argument, URL or store path syntax. */
export class UsageError extends StoreError {
  readonly code = 'ERR_USAGE'
  override readonly exitCode = 2
}

/** A store path, sub-path, blob or directory that is not there. */
export class NotFoundError extends StoreError {
  readonly code = 'ERR_NOT_FOUND'
}

/** Malformed input: an invalid NAR, Directory, PathInfo or store path name. */
export class InvalidInputError extends StoreError {
  readonly code = 'ERR_INVALID'
}

/** Stored data that does not match its digest or size. */
export class IntegrityError extends StoreError {
  readonly code = 'ERR_INTEGRITY'
}

/**
 * A store path that is already valid with different content: a stored
 * path is never replaced (what relies on it would silently change).
 */
export class AlreadyExistsError extends StoreError {
  readonly code = 'ERR_EXISTS'
}

/** A PathInfo whose tree or references the store does not have (yet): upload those first. */
export class MissingDataError extends StoreError {
  readonly code = 'ERR_MISSING'
}

/** Refused because something live still needs it (a path a root or another path keeps alive). */
export class StillAliveError extends StoreError {
  readonly code = 'ERR_ALIVE'
}

/** The backend lacks a capability. */
export class UnsupportedError extends StoreError {
  readonly code = 'ERR_UNSUPPORTED'
}

/** I/O or remote failure; the original error is in `cause`. */
export class BackendError extends StoreError {
  readonly code = 'ERR_BACKEND'
}

/**
 * A sweep deleted an object the write relied on while the write was under
 * way; nothing was registered. Running the write again succeeds.
 */
export class ConflictError extends StoreError {
  readonly code = 'ERR_CONFLICT'
}

/** A wait gave up: something held a lock far longer than it may. */
export class TimeoutError extends StoreError {
  readonly code = 'ERR_TIMEOUT'
}

/** A daemon refused the call: no valid token, or a token without the right (writes need a write token). */
export class AccessDeniedError extends StoreError {
  readonly code = 'ERR_ACCESS'
}

/** The disk (or quota) is full; a retry after freeing space can succeed. */
export class NoSpaceError extends StoreError {
  readonly code = 'ERR_NO_SPACE'
}

/** ENOSPC or EDQUOT from the system, or our NoSpaceError. */
export function isNoSpace(e: unknown): boolean {
  if (e instanceof NoSpaceError) return true
  const code = (e as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}

/** The system's wording of an errno error ("no space left on device"), without Node's "ENOSPC: …, write" frame. */
export function systemMessage(e: NodeJS.ErrnoException): string {
  return (typeof e.errno === 'number' && getSystemErrorMap().get(e.errno)?.[1]) || e.message
}
