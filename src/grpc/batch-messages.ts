/**
 * Codecs for tvix_store.ext.v1.BatchBlobService (protos/tvix_store/ext/v1):
 * our extension beside tvix's services, on the same wire helpers.
 */
import { asBytes, asUint, encode, varintLength, writeVarint } from '../proto/wire.js'
import { decodeWith } from './messages.js'

const EMPTY: Uint8Array = new Uint8Array(0)

export interface ReadBlobsRequest {
  digests: Uint8Array[]
  maxBlobSize: number
}
export const readBlobsRequest = {
  encode: (m: ReadBlobsRequest) =>
    encode((w) => {
      for (const d of m.digests) w.bytesAlways(1, d)
      w.uint(2, m.maxBlobSize)
    }),
  decode: (b: Uint8Array): ReadBlobsRequest =>
    decodeWith<ReadBlobsRequest>(b, { digests: [], maxBlobSize: 0 }, (m, f) => {
      if (f.field === 1) m.digests.push(asBytes(f, 'digests'))
      else if (f.field === 2) m.maxBlobSize = asUint(f, 'max_blob_size')
    }),
}

/** ReadBlobsResponse.State */
export enum BlobState {
  FOUND = 0,
  NOT_FOUND = 1,
  LARGER = 2,
}

export interface ReadBlobsResponse {
  index: number
  state: BlobState
  data: Uint8Array
}
export const readBlobsResponse = {
  /** Bytes are a message encoded already (a daemon's framed answer, written through grpc-js where it cannot write it itself). */
  encode: (m: ReadBlobsResponse | Uint8Array) =>
    m instanceof Uint8Array ? m : encode((w) => {
      w.uint(1, m.index)
      w.uint(2, m.state)
      w.bytes(3, m.data)
    }),
  decode: (b: Uint8Array): ReadBlobsResponse => {
    const m = readBlobsResponseAt(b, 0, b.length, { index: 0, state: 0, dataStart: 0, dataEnd: 0 })
    return { index: m.index, state: m.state, data: m.dataStart === m.dataEnd ? EMPTY : b.subarray(m.dataStart, m.dataEnd) }
  },
}

/** A ReadBlobsResponse read in place: its data is bytes `dataStart` to `dataEnd` of the buffer it was read from. */
export interface ReadBlobsFields {
  index: number
  state: BlobState
  dataStart: number
  dataEnd: number
}

/**
 * The ReadBlobsResponse that is bytes `start` to `end` of `b`, as
 * encode() writes it (fields 1, 2, 3 in order, each at most once, nothing
 * else), read in one pass into `into` (which a caller may reuse for every
 * message) and returned; any other shape is read by the generic decoder
 * (which refuses what is not a ReadBlobsResponse). A client reads one per blob of a batch,
 * where it lies in the DATA piece: a view and an object per message, and
 * the generic decoder's generator step and field objects per field, were
 * several % of an export's CPU through a daemon.
 */
export function readBlobsResponseAt(b: Uint8Array, start: number, end: number, into: ReadBlobsFields): ReadBlobsFields {
  let at = start
  /** A varint of up to 4 bytes (2^28) at `at`, or -1. */
  const varint = (): number => {
    let v = 0
    for (let shift = 0; shift < 28 && at < end; shift += 7) {
      const byte = b[at++]!
      v += (byte & 0x7f) * 2 ** shift
      if (byte < 0x80) return v
    }
    return -1
  }
  let index = 0
  let state = 0
  let dataStart = at
  let dataEnd = at
  if (at < end && b[at] === 0x08) {
    at++
    if ((index = varint()) < 0) return genericReadBlobsResponse(b, start, end, into)
  }
  if (at < end && b[at] === 0x10) {
    at++
    if ((state = varint()) < 0) return genericReadBlobsResponse(b, start, end, into)
  }
  if (at < end && b[at] === 0x1a) {
    at++
    const len = varint()
    if (len < 0 || len > end - at) return genericReadBlobsResponse(b, start, end, into)
    dataStart = at
    dataEnd = at += len
  }
  if (at !== end) return genericReadBlobsResponse(b, start, end, into)
  into.index = index
  into.state = state
  into.dataStart = dataStart
  into.dataEnd = dataEnd
  return into
}

/** A ReadBlobsResponse of another shape than encode()'s (fields repeated or out of order), by the generic decoder: its data located in `b`. */
function genericReadBlobsResponse(b: Uint8Array, start: number, end: number, into: ReadBlobsFields): ReadBlobsFields {
  const msg = b.subarray(start, end)
  const m = decodeWith<ReadBlobsResponse>(msg, { index: 0, state: BlobState.FOUND, data: EMPTY }, (m, f) => {
    if (f.field === 1) m.index = asUint(f, 'index')
    else if (f.field === 2) m.state = asUint(f, 'state')
    else if (f.field === 3) m.data = asBytes(f, 'data')
  })
  into.index = m.index
  into.state = m.state
  // The generic decoder's bytes are views of what it read; an empty field may be a shared empty array.
  into.dataStart = m.data.length === 0 ? start : m.data.byteOffset - msg.byteOffset + start
  into.dataEnd = into.dataStart + m.data.length
  return into
}

/** Most bytes frameReadBlobsResponse writes before a message's data (gRPC's prefix, three tags, three varints). */
export const FRAMED_HEAD_MAX = 5 + 3 + 10 + 10 + 10

/**
 * A ReadBlobsResponse as gRPC frames it (a flag byte, the message's length
 * in 4 bytes, then the message readBlobsResponse.encode writes), written
 * into `out` at `at` up to where its `size` bytes of data go: returns that
 * offset. A daemon answering a batch writes all its messages into one
 * buffer this way, each blob copied once, and sends them in one write.
 */
export function frameReadBlobsResponse(out: Buffer, at: number, index: number, state: BlobState, size: number): number {
  const len = (index > 0 ? 1 + varintLength(index) : 0) + (state > 0 ? 1 + varintLength(state) : 0) + (size > 0 ? 1 + varintLength(size) + size : 0)
  out[at] = 0
  out.writeUInt32BE(len, at + 1)
  at += 5
  // Fields in number order, zero and empty ones left out: as encode() writes them.
  if (index > 0) {
    out[at++] = 0x08
    at = writeVarint(out, at, index)
  }
  if (state > 0) {
    out[at++] = 0x10
    at = writeVarint(out, at, state)
  }
  if (size > 0) {
    out[at++] = 0x1a
    at = writeVarint(out, at, size)
  }
  return at
}

/** A bytes field (`tag`, length, `v`; nothing when `v` is empty) written at `at`; returns where it ends. */
function bytesField(out: Buffer, at: number, tag: number, v: Uint8Array): number {
  if (v.length === 0) return at
  out[at++] = tag
  at = writeVarint(out, at, v.length)
  out.set(v, at)
  return at + v.length
}

function bytesFieldLength(v: Uint8Array): number {
  return v.length > 0 ? 1 + varintLength(v.length) + v.length : 0
}

/** Bytes framePutBlobsRequests writes for `reqs`. */
export function framedPutBlobsLength(reqs: readonly PutBlobsRequest[]): number {
  let size = 0
  for (const r of reqs) size += 5 + bytesFieldLength(r.digest) + bytesFieldLength(r.data)
  return size
}

/**
 * A client stream of PutBlobsRequests as gRPC frames it (each message as
 * putBlobsRequest.encode writes it, behind its flag byte and length),
 * written into `out` from its start; returns the bytes written. A batch
 * encoded message by message and then framed copied each blob twice,
 * both times into fresh memory, which this machine pays for at its first
 * touch; here each is copied once, into a buffer the caller can reuse.
 */
export function framePutBlobsRequests(out: Buffer, reqs: readonly PutBlobsRequest[]): number {
  let at = 0
  for (const r of reqs) {
    out[at] = 0
    out.writeUInt32BE(bytesFieldLength(r.digest) + bytesFieldLength(r.data), at + 1)
    at = bytesField(out, bytesField(out, at + 5, 0x0a, r.digest), 0x12, r.data)
  }
  return at
}


export interface PutBlobsRequest {
  digest: Uint8Array
  data: Uint8Array
}
export const putBlobsRequest = {
  /**
   * Into one buffer of the message's size, as encode() would write it: a
   * client encodes one per blob of a batch, and the Writer's first buffer
   * (256 bytes, then grown and copied) made two allocations of most.
   */
  encode: (m: PutBlobsRequest): Uint8Array => {
    const out = Buffer.allocUnsafe(bytesFieldLength(m.digest) + bytesFieldLength(m.data))
    bytesField(out, bytesField(out, 0, 0x0a, m.digest), 0x12, m.data)
    return out
  },
  decode: (b: Uint8Array): PutBlobsRequest =>
    decodeWith<PutBlobsRequest>(b, { digest: EMPTY, data: EMPTY }, (m, f) => {
      if (f.field === 1) m.digest = asBytes(f, 'digest')
      else if (f.field === 2) m.data = asBytes(f, 'data')
    }),
}

/** A message of one `repeated bytes digests = 1`: PutBlobsResponse and StatBlobsRequest. */
export interface DigestList {
  digests: Uint8Array[]
}
const digestList = {
  encode: (m: DigestList) =>
    encode((w) => {
      for (const d of m.digests) w.bytesAlways(1, d)
    }),
  decode: (b: Uint8Array): DigestList =>
    decodeWith<DigestList>(b, { digests: [] }, (m, f) => {
      if (f.field === 1) m.digests.push(asBytes(f, 'digests'))
    }),
}

export type PutBlobsResponse = DigestList
export const putBlobsResponse = digestList
export type StatBlobsRequest = DigestList
export const statBlobsRequest = digestList

export interface StatBlobsResponse {
  /** One byte per digest: 1 present, 0 absent. */
  present: Uint8Array
}
export const statBlobsResponse = {
  encode: (m: StatBlobsResponse) => encode((w) => w.bytes(1, m.present)),
  decode: (b: Uint8Array): StatBlobsResponse =>
    decodeWith<StatBlobsResponse>(b, { present: EMPTY }, (m, f) => {
      if (f.field === 1) m.present = asBytes(f, 'present')
    }),
}
