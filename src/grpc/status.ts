import { status as Status, type ServiceError } from '@grpc/grpc-js'
import {
  AlreadyExistsError,
  BackendError,
  ConflictError,
  IntegrityError,
  InvalidInputError,
  MissingDataError,
  NotFoundError,
  StoreError,
  UnsupportedError,
  UsageError,
  isNoSpace,
} from '../errors.js'
import { NarTooLargeError } from '../store/nar/size.js'

/** A gRPC status to answer with; handlers throw it, adapters send it. */
export class StatusError extends Error {
  constructor(
    readonly code: Status,
    message: string,
  ) {
    super(message)
  }
}

/** Our errors as gRPC status codes (SPEC 3.6). */
export function toStatus(e: unknown): { code: Status; details: string } {
  if (e instanceof StatusError) return { code: e.code, details: e.message }
  const details = (e as Error)?.message ?? String(e)
  if (e instanceof InvalidInputError || e instanceof UsageError) return { code: Status.INVALID_ARGUMENT, details }
  if (e instanceof NotFoundError) return { code: Status.NOT_FOUND, details }
  if (e instanceof AlreadyExistsError) return { code: Status.ALREADY_EXISTS, details }
  if (e instanceof MissingDataError) return { code: Status.FAILED_PRECONDITION, details }
  if (e instanceof IntegrityError) return { code: Status.DATA_LOSS, details }
  // A tree whose NAR is over the daemon's bound: what one call may cost is exhausted.
  if (e instanceof NarTooLargeError) return { code: Status.RESOURCE_EXHAUSTED, details }
  if (e instanceof UnsupportedError) return { code: Status.UNIMPLEMENTED, details }
  // Retryable by the client, as gRPC defines ABORTED: a concurrent gc took what the call relied on.
  if (e instanceof ConflictError) return { code: Status.ABORTED, details }
  // The client went away mid-stream (killed, disconnected): not a failure of ours.
  if ((e as NodeJS.ErrnoException)?.code === 'ERR_STREAM_PREMATURE_CLOSE') return { code: Status.CANCELLED, details: 'the client went away' }
  // A full disk is the server's resource, not a bug: the client may retry later.
  if (isNoSpace(e)) return { code: Status.RESOURCE_EXHAUSTED, details }
  return { code: Status.INTERNAL, details }
}

export function isServiceError(e: unknown): e is ServiceError {
  return typeof e === 'object' && e !== null && 'code' in e && typeof (e as ServiceError).code === 'number' && 'details' in e
}

/** A failed call as one of our errors, naming the daemon when it cannot be reached. */
export function fromStatus(e: unknown, target: string): Error {
  if (!isServiceError(e)) return e instanceof Error ? e : new BackendError(String(e))
  const details = e.details || Status[e.code]
  switch (e.code) {
    case Status.NOT_FOUND:
      return new NotFoundError(details, { cause: e })
    case Status.INVALID_ARGUMENT:
      return new InvalidInputError(`the daemon refused the request: ${details}`, { cause: e })
    case Status.FAILED_PRECONDITION:
      return new MissingDataError(`the daemon refused the request: ${details}`, { cause: e })
    case Status.ALREADY_EXISTS:
      return new AlreadyExistsError(`the daemon refused the request: ${details}`, { cause: e })
    case Status.DATA_LOSS:
      return new IntegrityError(`the daemon reports lost data: ${details}`, { cause: e })
    case Status.UNIMPLEMENTED:
      return new UnsupportedError(`the daemon at ${target} does not support this: ${details}`, { cause: e })
    case Status.ABORTED:
      return new ConflictError(`the daemon at ${target} aborted the write: ${details}`, { cause: e })
    case Status.UNAVAILABLE:
      return new BackendError(`cannot reach the tvix-store daemon at ${target}: ${connectReason(details)}`, { cause: e })
    case Status.DEADLINE_EXCEEDED:
      return new BackendError(`the tvix-store daemon at ${target} did not answer in time`, { cause: e })
    default:
      return new BackendError(`the tvix-store daemon at ${target} failed: ${Status[e.code]}: ${details}`, { cause: e })
  }
}

/** grpc-js's connection failure text, reduced to its cause: "connect ECONNREFUSED 127.0.0.1:1". */
function connectReason(details: string): string {
  const cause = /Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/.exec(details)?.[1]
  return (cause ?? details).trim()
}

export { Status }
export type { StoreError }
