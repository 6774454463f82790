/**
 * The standard gRPC health checking service (grpc.health.v1.Health), see
 * https://github.com/grpc/grpc/blob/master/doc/health-checking.md.
 *
 * Daemon-only: this loads @bufbuild/protobuf, which the CLI avoids.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf'
import * as grpc from '@grpc/grpc-js'
import {
  type HealthCheckRequest,
  HealthCheckRequestSchema,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from '../proto/gen/grpc/health/v1/health_pb.js'

export { HealthCheckResponse_ServingStatus as ServingStatus } from '../proto/gen/grpc/health/v1/health_pb.js'
export type { HealthCheckRequest, HealthCheckResponse } from '../proto/gen/grpc/health/v1/health_pb.js'

export const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health'

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

const serializeRequest = (m: HealthCheckRequest): Buffer => toBuffer(toBinary(HealthCheckRequestSchema, m))
const deserializeRequest = (b: Buffer): HealthCheckRequest => fromBinary(HealthCheckRequestSchema, b)
const serializeResponse = (m: HealthCheckResponse): Buffer => toBuffer(toBinary(HealthCheckResponseSchema, m))
const deserializeResponse = (b: Buffer): HealthCheckResponse => fromBinary(HealthCheckResponseSchema, b)

/** grpc-js definition of grpc.health.v1.Health, for servers and clients alike. */
export const healthServiceDefinition = {
  check: {
    path: `/${HEALTH_SERVICE_NAME}/Check`,
    requestStream: false,
    responseStream: false,
    requestSerialize: serializeRequest,
    requestDeserialize: deserializeRequest,
    responseSerialize: serializeResponse,
    responseDeserialize: deserializeResponse,
    originalName: 'Check',
  },
  watch: {
    path: `/${HEALTH_SERVICE_NAME}/Watch`,
    requestStream: false,
    responseStream: true,
    requestSerialize: serializeRequest,
    requestDeserialize: deserializeRequest,
    responseSerialize: serializeResponse,
    responseDeserialize: deserializeResponse,
    originalName: 'Watch',
  },
} satisfies grpc.ServiceDefinition

export interface HealthService {
  /**
   * Marks the server ("") and every known service SERVING or NOT_SERVING;
   * with `service`, only that one (registering it if it was unknown, which
   * Watch calls on that name then see). Ignored after shutdown().
   */
  setServing(serving: boolean, service?: string): void
  /**
   * Shutdown has begun: everything becomes NOT_SERVING for good, open Watch
   * calls get that status and are then ended (status OK), so they do not
   * hold up server.tryShutdown(). Call it before tryShutdown().
   */
  shutdown(): void
}

type Watcher = (status: ServingStatus) => void

/**
 * Registers grpc.health.v1.Health on `server`. Check and Watch know the
 * whole server ("") and the given service names, all SERVING to start with.
 */
export function addHealthService(server: grpc.Server, serviceNames: readonly string[]): HealthService {
  const statuses = new Map<string, ServingStatus>([['', ServingStatus.SERVING]])
  for (const name of serviceNames) statuses.set(name, ServingStatus.SERVING)
  const watchers = new Map<string, Set<Watcher>>()
  const openWatches = new Set<grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>>()
  let shuttingDown = false

  const set = (service: string, status: ServingStatus): void => {
    if (statuses.get(service) === status) return
    statuses.set(service, status)
    for (const notify of watchers.get(service) ?? []) notify(status)
  }

  const check: grpc.handleUnaryCall<HealthCheckRequest, HealthCheckResponse> = (call, callback) => {
    const status = statuses.get(call.request.service)
    if (status === undefined) {
      callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${JSON.stringify(call.request.service)}` })
      return
    }
    callback(null, create(HealthCheckResponseSchema, { status }))
  }

  const watch: grpc.handleServerStreamingCall<HealthCheckRequest, HealthCheckResponse> = (call) => {
    const service = call.request.service
    let last: ServingStatus | undefined
    const send: Watcher = (status) => {
      // The spec promises a message only when the status changes.
      if (status === last || call.cancelled || call.writableEnded) return
      last = status
      call.write(create(HealthCheckResponseSchema, { status }))
    }
    let mine = watchers.get(service)
    if (mine === undefined) watchers.set(service, (mine = new Set()))
    mine.add(send)
    openWatches.add(call)
    const group = mine
    const cleanup = (): void => {
      group.delete(send)
      if (group.size === 0 && watchers.get(service) === group) watchers.delete(service)
      openWatches.delete(call)
    }
    call.on('cancelled', cleanup)
    call.on('finish', cleanup)
    call.on('error', cleanup)
    // Unknown names get SERVICE_UNKNOWN and stay open: the name may become
    // known later (setServing with a service).
    send(statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN)
    if (shuttingDown) call.end()
  }

  server.addService(healthServiceDefinition, { check, watch })

  return {
    setServing(serving, service) {
      if (shuttingDown) return
      const status = serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING
      if (service !== undefined) set(service, status)
      else for (const name of [...statuses.keys()]) set(name, status)
    },
    shutdown() {
      if (shuttingDown) return
      for (const name of [...statuses.keys()]) set(name, ServingStatus.NOT_SERVING)
      shuttingDown = true
      for (const call of [...openWatches]) {
        openWatches.delete(call)
        if (!call.cancelled && !call.writableEnded) call.end()
      }
    },
  }
}
