import { Metadata, type ServiceError, type StatusObject } from '@grpc/grpc-js'
import {
  AccessDeniedError,
  AlreadyExistsError,
  BackendError,
  ConflictError,
  IntegrityError,
  InvalidInputError,
  MissingDataError,
  NoSpaceError,
  NotFoundError,
  StillAliveError,
  StoreError,
  TimeoutError,
  UnsupportedError,
  UsageError,
  isNoSpace,
} from '../errors.js'
import { NarTooLargeError } from '../store/nar/size.js'

/**
 * gRPC's status codes (the numbers of the gRPC spec, as grpc-js's
 * `status`): defined here so that a client that never makes a grpc-js
 * call (a CLI on the lean HTTP/2 calls) does not load grpc-js to name them.
 */
export enum Status {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

/** A gRPC status to answer with; handlers throw it, adapters send it. */
export class StatusError extends Error {
  constructor(
    readonly code: Status,
    message: string,
  ) {
    super(message)
  }
}

type StoreErrorClass = new (message: string, options?: { cause?: unknown }) => StoreError

/**
 * Each error class of ours and the status it travels as (SPEC 3.6). A
 * status that comes without our trailer (another server, or a protocol
 * check of our daemon's) is read as the class marked `reads`; any other is
 * a BackendError.
 */
const STATUS_OF_CLASS: Array<{ cls: StoreErrorClass; status: Status; reads?: true }> = [
  { cls: InvalidInputError, status: Status.INVALID_ARGUMENT, reads: true },
  { cls: UsageError, status: Status.INVALID_ARGUMENT },
  { cls: NotFoundError, status: Status.NOT_FOUND, reads: true },
  { cls: AlreadyExistsError, status: Status.ALREADY_EXISTS, reads: true },
  { cls: MissingDataError, status: Status.FAILED_PRECONDITION, reads: true },
  { cls: StillAliveError, status: Status.FAILED_PRECONDITION },
  { cls: IntegrityError, status: Status.DATA_LOSS, reads: true },
  { cls: UnsupportedError, status: Status.UNIMPLEMENTED, reads: true },
  // Retryable by the client, as gRPC defines ABORTED: a concurrent gc took what the call relied on.
  { cls: ConflictError, status: Status.ABORTED, reads: true },
  { cls: TimeoutError, status: Status.DEADLINE_EXCEEDED },
  // Refusals of the daemon's token check (daemon/auth.ts), which answers before any handler: no trailer.
  { cls: AccessDeniedError, status: Status.UNAUTHENTICATED, reads: true },
  { cls: AccessDeniedError, status: Status.PERMISSION_DENIED, reads: true },
  // A full disk is the server's resource, not a bug: the client may retry later.
  { cls: NoSpaceError, status: Status.RESOURCE_EXHAUSTED },
  // The store behind the daemon failed (I/O, a remote): STYLE.md's UNAVAILABLE, retryable.
  { cls: BackendError, status: Status.UNAVAILABLE },
]

/** Trailer with our error's `code` (ERR_…): a tvix-store client gets the very class back, other clients read the status. */
const ERROR_CODE_TRAILER = 'tvix-store-error'
const CLASS_OF_CODE = new Map(STATUS_OF_CLASS.map(({ cls }) => [new cls('').code, cls]))

function withCode(code: string): Metadata {
  const m = new Metadata()
  m.set(ERROR_CODE_TRAILER, code)
  return m
}

/** Any error as the gRPC status the daemon answers with; what is not ours to explain is INTERNAL. */
export function toStatus(e: unknown): StatusObject {
  const none = new Metadata()
  if (e instanceof StatusError) return { code: e.code, details: e.message, metadata: none }
  const details = (e as Error)?.message ?? String(e)
  // A tree whose NAR is over the daemon's bound: what one call may cost is exhausted.
  if (e instanceof NarTooLargeError) return { code: Status.RESOURCE_EXHAUSTED, details, metadata: none }
  const known = STATUS_OF_CLASS.find(({ cls }) => e instanceof cls)
  if (known) return { code: known.status, details, metadata: withCode((e as StoreError).code) }
  // The client went away mid-stream (killed, disconnected): not a failure of ours.
  if ((e as NodeJS.ErrnoException)?.code === 'ERR_STREAM_PREMATURE_CLOSE') return { code: Status.CANCELLED, details: 'the client went away', metadata: none }
  if (isNoSpace(e)) return { code: Status.RESOURCE_EXHAUSTED, details, metadata: withCode(new NoSpaceError('').code) }
  return { code: Status.INTERNAL, details, metadata: none }
}

export function isServiceError(e: unknown): e is ServiceError {
  return typeof e === 'object' && e !== null && 'code' in e && typeof (e as ServiceError).code === 'number' && 'details' in e
}

/**
 * A failed call as one of our errors, the daemon's message kept: the class
 * our daemon named in its trailer, else the one the status means. Only
 * failures that are the daemon's rather than the request's name it.
 */
export function fromStatus(e: unknown, target: string): Error {
  if (!isServiceError(e)) return e instanceof Error ? e : new BackendError(String(e))
  const details = e.details || Status[e.code]
  const named = CLASS_OF_CODE.get(String(e.metadata?.get(ERROR_CODE_TRAILER)[0] ?? ''))
  // Without our trailer, UNAVAILABLE and DEADLINE_EXCEEDED come from grpc-js: the daemon was not reached, or did not answer.
  if (!named && e.code === Status.UNAVAILABLE) return new BackendError(`cannot reach the tvix-store daemon at ${target}: ${connectReason(details)}`, { cause: e })
  if (!named && e.code === Status.DEADLINE_EXCEEDED) return new BackendError(`the tvix-store daemon at ${target} did not answer in time`, { cause: e })
  const cls = named ?? STATUS_OF_CLASS.find((c) => c.reads && c.status === e.code)?.cls
  if (!cls) return new BackendError(`the tvix-store daemon at ${target} failed: ${Status[e.code]}: ${details}`, { cause: e })
  return new cls(messageOf(cls, details, target), { cause: e })
}

/** What the user reads: the daemon's words, with where they come from when the failure is the daemon's own. */
function messageOf(cls: StoreErrorClass, details: string, target: string): string {
  if (cls === IntegrityError) return `the daemon reports lost data: ${details}`
  if (cls === UnsupportedError) return `the daemon at ${target} does not support this: ${details}`
  if (cls === AccessDeniedError) return `the tvix-store daemon at ${target} refused the call: ${details}`
  if (cls === ConflictError) return `the daemon at ${target} aborted the write: ${details}`
  if (cls === BackendError || cls === TimeoutError || cls === NoSpaceError) return `the tvix-store daemon at ${target} failed: ${details}`
  return details
}

/** grpc-js's connection failure text, reduced to its cause: "connect ECONNREFUSED 127.0.0.1:1". */
function connectReason(details: string): string {
  const cause = /Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/.exec(details)?.[1]
  return (cause ?? details).trim()
}

export type { StoreError }
