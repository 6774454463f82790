/**
 * The standard gRPC server reflection service, in both versions clients use
 * (grpc.reflection.v1 and grpc.reflection.v1alpha), see
 * https://github.com/grpc/grpc/blob/master/doc/server-reflection.md.
 *
 * Descriptors come from ./descriptors.js: every file is served under the
 * name its importers use in `dependency`, and each FileDescriptorResponse
 * carries the requested file plus all its transitive imports, so a client
 * can build the whole graph from one answer or fetch each import back by
 * file name.
 *
 * Daemon-only: this loads @bufbuild/protobuf, which the CLI avoids.
 */
import { create, fromBinary, toBinary } from '@bufbuild/protobuf'
import type { DescMessage, MessageInitShape, MessageShape } from '@bufbuild/protobuf'
import * as grpc from '@grpc/grpc-js'
import {
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
} from '../proto/gen/grpc/reflection/v1/reflection_pb.js'
import * as v1alpha from '../proto/gen/grpc/reflection/v1alpha/reflection_pb.js'
import { type DescriptorPool, daemonDescriptors } from './descriptors.js'

export const REFLECTION_V1_SERVICE_NAME = 'grpc.reflection.v1.ServerReflection'
export const REFLECTION_V1ALPHA_SERVICE_NAME = 'grpc.reflection.v1alpha.ServerReflection'

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function bidiMethod<Req extends DescMessage, Res extends DescMessage>(service: string, req: Req, res: Res) {
  return {
    path: `/${service}/ServerReflectionInfo`,
    requestStream: true,
    responseStream: true,
    requestSerialize: (m: MessageShape<Req>): Buffer => toBuffer(toBinary(req, m)),
    requestDeserialize: (b: Buffer): MessageShape<Req> => fromBinary(req, b),
    responseSerialize: (m: MessageShape<Res>): Buffer => toBuffer(toBinary(res, m)),
    responseDeserialize: (b: Buffer): MessageShape<Res> => fromBinary(res, b),
    originalName: 'ServerReflectionInfo',
  } as const
}

/** grpc-js definition of grpc.reflection.v1.ServerReflection, for servers and clients alike. */
export const reflectionV1ServiceDefinition = {
  serverReflectionInfo: bidiMethod(
    REFLECTION_V1_SERVICE_NAME,
    ServerReflectionRequestSchema,
    ServerReflectionResponseSchema,
  ),
} satisfies grpc.ServiceDefinition

/** grpc-js definition of grpc.reflection.v1alpha.ServerReflection, for servers and clients alike. */
export const reflectionV1alphaServiceDefinition = {
  serverReflectionInfo: bidiMethod(
    REFLECTION_V1ALPHA_SERVICE_NAME,
    v1alpha.ServerReflectionRequestSchema,
    v1alpha.ServerReflectionResponseSchema,
  ),
} satisfies grpc.ServiceDefinition

// google.rpc.Code values used in ErrorResponse.error_code.
const INVALID_ARGUMENT = 3
const NOT_FOUND = 5
const UNIMPLEMENTED = 12

/**
 * The answer to one reflection request (v1 messages; v1alpha is the same
 * wire format). `services` is what list_services reports.
 */
export function answerReflectionRequest(
  request: ServerReflectionRequest,
  services: readonly string[],
  pool: DescriptorPool = daemonDescriptors,
): ServerReflectionResponse {
  const reply = (messageResponse: MessageInitShape<typeof ServerReflectionResponseSchema>['messageResponse']) =>
    create(ServerReflectionResponseSchema, { validHost: request.host, originalRequest: request, messageResponse })
  const error = (errorCode: number, errorMessage: string) =>
    reply({ case: 'errorResponse', value: { errorCode, errorMessage } })
  const files = (fileName: string) => {
    const closure = pool.closure(fileName)!
    return reply({ case: 'fileDescriptorResponse', value: { fileDescriptorProto: closure.map((f) => f.bytes) } })
  }

  const r = request.messageRequest
  switch (r.case) {
    case 'listServices':
      return reply({ case: 'listServicesResponse', value: { service: services.map((name) => ({ name })) } })
    case 'fileByFilename':
      if (!pool.files.has(r.value)) return error(NOT_FOUND, `file not found: ${r.value}`)
      return files(r.value)
    case 'fileContainingSymbol': {
      const file = pool.fileContainingSymbol(r.value)
      if (file === undefined) return error(NOT_FOUND, `symbol not found: ${r.value}`)
      return files(file.name)
    }
    case 'fileContainingExtension':
    case 'allExtensionNumbersOfType':
      // None of our proto3 files declares or accepts extensions.
      return error(UNIMPLEMENTED, 'extensions are not supported by this server')
    default:
      return error(INVALID_ARGUMENT, 'empty reflection request')
  }
}

/**
 * Registers grpc.reflection.v1.ServerReflection and
 * grpc.reflection.v1alpha.ServerReflection on `server`. list_services
 * reports `serviceNames` followed by the two reflection services; every
 * name must be a service declared in the descriptor pool (throws
 * otherwise, since clients could not resolve it).
 */
export function addReflectionService(
  server: grpc.Server,
  serviceNames: readonly string[],
  pool: DescriptorPool = daemonDescriptors,
): void {
  const services = [...new Set([...serviceNames, REFLECTION_V1_SERVICE_NAME, REFLECTION_V1ALPHA_SERVICE_NAME])]
  for (const name of services) {
    if (pool.symbols.get(name)?.kind !== 'service') {
      throw new Error(`reflection: no descriptor for service ${name}`)
    }
  }

  const v1: grpc.handleBidiStreamingCall<ServerReflectionRequest, ServerReflectionResponse> = (call) => {
    call.on('data', (req: ServerReflectionRequest) => {
      if (!call.cancelled && !call.writableEnded) call.write(answerReflectionRequest(req, services, pool))
    })
    call.on('end', () => call.end())
  }

  // v1alpha differs from v1 only in the package name, so its messages are
  // byte-for-byte the same on the wire: re-read them as v1 and back.
  const v1alphaHandler: grpc.handleBidiStreamingCall<
    v1alpha.ServerReflectionRequest,
    v1alpha.ServerReflectionResponse
  > = (call) => {
    call.on('data', (alphaReq: v1alpha.ServerReflectionRequest) => {
      if (call.cancelled || call.writableEnded) return
      const req = fromBinary(ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, alphaReq))
      const res = answerReflectionRequest(req, services, pool)
      call.write(fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(ServerReflectionResponseSchema, res)))
    })
    call.on('end', () => call.end())
  }

  server.addService(reflectionV1ServiceDefinition, { serverReflectionInfo: v1 })
  server.addService(reflectionV1alphaServiceDefinition, { serverReflectionInfo: v1alphaHandler })
}
