/**
 * Codecs for tvix_store.ext.v1.BatchBlobService (protos/tvix_store/ext/v1):
 * our extension beside tvix's services, on the same wire helpers.
 */
import { asBytes, asUint, encode } from '../proto/wire.js'
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
  encode: (m: ReadBlobsResponse) =>
    encode((w) => {
      w.uint(1, m.index)
      w.uint(2, m.state)
      w.bytes(3, m.data)
    }),
  decode: (b: Uint8Array): ReadBlobsResponse =>
    decodeWith<ReadBlobsResponse>(b, { index: 0, state: BlobState.FOUND, data: EMPTY }, (m, f) => {
      if (f.field === 1) m.index = asUint(f, 'index')
      else if (f.field === 2) m.state = asUint(f, 'state')
      else if (f.field === 3) m.data = asBytes(f, 'data')
    }),
}

export interface PutBlobsRequest {
  digest: Uint8Array
  data: Uint8Array
}
export const putBlobsRequest = {
  encode: (m: PutBlobsRequest) =>
    encode((w) => {
      w.bytes(1, m.digest)
      w.bytes(2, m.data)
    }),
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
