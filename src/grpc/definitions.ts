/**
 * The three tvix services as grpc-js service definitions, built from our
 * codecs (no proto-loader, whose protobufjs encoding breaks digests).
 * Servers receive raw request bytes and decode them in the handler, so a
 * malformed message becomes INVALID_ARGUMENT instead of grpc-js's INTERNAL.
 */
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js'
import { decodeDirectory, decodeNode, encodeDirectory, encodeNode } from '../castore/proto.js'
import type { Directory } from '../castore/directory.js'
import { decodePathInfo, encodePathInfo } from '../store/proto.js'
import { MAX_DIRECTORY_BYTES } from '../castore/directory-service.js'
import * as m from './messages.js'
import * as batch from './batch-messages.js'

interface Codec<T> {
  encode(v: T): Uint8Array
  decode(b: Uint8Array): T
}

interface Method<Req, Res> {
  name: string
  requestStream: boolean
  responseStream: boolean
  req: Codec<Req>
  res: Codec<Res>
}

const method = <Req, Res>(name: string, requestStream: boolean, responseStream: boolean, req: Codec<Req>, res: Codec<Res>): Method<Req, Res> => ({
  name,
  requestStream,
  responseStream,
  req,
  res,
})

// A server may answer with a Directory's stored canonical bytes, sent as they are.
const directory = { encode: (d: Directory | Uint8Array) => (d instanceof Uint8Array ? d : encodeDirectory(d)), decode: decodeDirectory }
const pathInfo = { encode: encodePathInfo, decode: decodePathInfo }
const node = { encode: encodeNode, decode: decodeNode }

/** Package-qualified service name → its methods (SPEC 1.5). */
export const SERVICES = {
  'tvix.castore.v1.BlobService': {
    Stat: method('Stat', false, false, m.statBlobRequest, m.statBlobResponse),
    Read: method('Read', false, true, m.digestMessage, m.blobChunk),
    Put: method('Put', true, false, m.blobChunk, m.digestMessage),
  },
  'tvix.castore.v1.DirectoryService': {
    Get: method('Get', false, true, m.getDirectoryRequest, directory),
    Put: method('Put', true, false, directory, m.putDirectoryResponse),
  },
  'tvix.store.v1.PathInfoService': {
    Get: method('Get', false, false, m.getPathInfoRequest, pathInfo),
    Put: method('Put', false, false, pathInfo, pathInfo),
    CalculateNAR: method('CalculateNAR', false, false, node, m.calculateNarResponse),
    List: method('List', false, true, m.emptyMessage, pathInfo),
  },
  // Ours, not tvix's (protos/tvix_store): many small blobs per call; tvix daemons answer UNIMPLEMENTED.
  'tvix_store.ext.v1.BatchBlobService': {
    ReadBlobs: method('ReadBlobs', false, true, batch.readBlobsRequest, batch.readBlobsResponse),
    PutBlobs: method('PutBlobs', true, false, batch.putBlobsRequest, batch.putBlobsResponse),
    StatBlobs: method('StatBlobs', false, false, batch.statBlobsRequest, batch.statBlobsResponse),
  },
} as const

/** Our batch extension (BatchBlobService). */
export const BATCH_SERVICE = 'tvix_store.ext.v1.BatchBlobService'
/** The services of the tvix protocol itself. */
export const TVIX_SERVICES = Object.keys(SERVICES).filter((s) => s !== BATCH_SERVICE) as ServiceName[]

export type ServiceName = keyof typeof SERVICES

const toBuffer = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength)
const identity = (b: Buffer) => b

/**
 * The grpc-js definition of a service. On the server side requests stay
 * raw bytes (the handler decodes them and answers INVALID_ARGUMENT when
 * they are malformed); on the client side everything is (de)coded here.
 */
export function serviceDefinition(service: ServiceName, side: 'server' | 'client'): ServiceDefinition {
  const def: Record<string, MethodDefinition<unknown, unknown>> = {}
  for (const [name, mm] of Object.entries(SERVICES[service]) as Array<[string, Method<unknown, unknown>]>) {
    def[name] = {
      path: `/${service}/${name}`,
      requestStream: mm.requestStream,
      responseStream: mm.responseStream,
      requestSerialize: (v: unknown) => toBuffer(mm.req.encode(v)),
      requestDeserialize: side === 'server' ? identity : (b: Buffer) => mm.req.decode(b),
      responseSerialize: side === 'server' && mm.res === m.blobChunk ? blobChunkInScratch : (v: unknown) => toBuffer(mm.res.encode(v)),
      responseDeserialize: (b: Buffer) => mm.res.decode(b),
    }
  }
  return def as ServiceDefinition
}

let scratch = Buffer.allocUnsafe(0)

/**
 * A BlobChunk response (blob Read) encoded into one reused buffer, as
 * blobChunk.encode would: grpc-js's server copies what a serializer
 * returns into its own framed buffer at once (serializeMessage, called
 * synchronously by sendMessage) and keeps nothing, so a fresh buffer per
 * message was only garbage (page faults, then GC) on the daemon's
 * hottest path. Not for the client side: grpc-js keeps a request's bytes
 * for retries.
 */
function blobChunkInScratch(v: unknown): Buffer {
  const data = v as Uint8Array
  if (data.length === 0) return Buffer.alloc(0)
  if (scratch.length < data.length + 6) scratch = Buffer.allocUnsafe(Math.max(data.length, BLOB_CHUNK_BYTES) + 6)
  const at = m.blobChunk.head(scratch, 0, data.length)
  scratch.set(data, at)
  return scratch.subarray(0, at + data.length)
}

/**
 * Encoded messages, each with gRPC's 5-byte prefix (uncompressed, length),
 * in one fresh buffer: one write, which HTTP/2 packs into full DATA frames.
 */
export function frameMessages(messages: readonly Uint8Array[]): Buffer {
  let size = 0
  for (const m of messages) size += 5 + m.length
  const framed = Buffer.allocUnsafe(size)
  let at = 0
  for (const m of messages) {
    framed[at] = 0
    framed.writeUInt32BE(m.length, at + 1)
    framed.set(m, at + 5)
    at += 5 + m.length
  }
  return framed
}

/**
 * The gRPC prefix and protobuf head of a BlobChunk message with `size`
 * bytes of data, the data to follow: a daemon writing a Read's messages
 * onto HTTP/2 itself (DirectBytes), as blobChunkInScratch would frame them.
 */
export function blobChunkFrameHead(size: number): Uint8Array {
  const head = Buffer.allocUnsafe(5 + 6)
  // An empty BlobChunk is no bytes at all (proto3 leaves an empty field out).
  const end = size === 0 ? 5 : m.blobChunk.head(head, 5, size)
  head[0] = 0
  head.writeUInt32BE(end - 5 + size, 1)
  return head.subarray(0, end)
}

/**
 * Largest message either side sends or accepts: the largest Directory a
 * store holds (4 MiB, tonic's default that tvix/snix peers keep); blob
 * data travels in chunks well below it.
 */
export const MAX_MESSAGE_BYTES = MAX_DIRECTORY_BYTES
/** Blob data per BlobChunk message. */
export const BLOB_CHUNK_BYTES = 1024 * 1024
