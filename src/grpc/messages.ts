/**
 * Codecs for the small request/response messages of the three tvix
 * services (the rpc_*.proto files under protos/tvix), on the same wire helpers
 * as the store's own messages. A oneof member is `undefined` when unset:
 * unlike a plain field, a set-but-empty member is meaningful.
 */
import { type Field, asBytes, asUint, encode, fields, writeVarint } from '../proto/wire.js'

const EMPTY: Uint8Array = new Uint8Array(0)

export function decodeWith<T>(buf: Uint8Array, init: T, apply: (m: T, f: Field) => void): T {
  for (const f of fields(buf)) apply(init, f)
  return init
}

// --- BlobService -------------------------------------------------------------

export interface StatBlobRequest {
  digest: Uint8Array
  sendChunks: boolean
  sendBao: boolean
}
export const statBlobRequest = {
  encode: (m: StatBlobRequest) =>
    encode((w) => {
      w.bytes(1, m.digest)
      w.bool(2, m.sendChunks)
      w.bool(3, m.sendBao)
    }),
  decode: (b: Uint8Array): StatBlobRequest =>
    decodeWith<StatBlobRequest>(b, { digest: EMPTY, sendChunks: false, sendBao: false }, (m, f) => {
      if (f.field === 1) m.digest = asBytes(f, 'digest')
      else if (f.field === 2) m.sendChunks = asUint(f, 'send_chunks') !== 0
      else if (f.field === 3) m.sendBao = asUint(f, 'send_bao') !== 0
    }),
}

export interface ChunkMeta {
  digest: Uint8Array
  size: number
}
export interface StatBlobResponse {
  chunks: ChunkMeta[]
  bao: Uint8Array
}
export const statBlobResponse = {
  encode: (m: StatBlobResponse) =>
    encode((w) => {
      for (const c of m.chunks) {
        w.message(2, (cw) => {
          cw.bytes(1, c.digest)
          cw.uint(2, c.size)
        })
      }
      w.bytes(3, m.bao)
    }),
  decode: (b: Uint8Array): StatBlobResponse =>
    decodeWith(b, { chunks: [] as ChunkMeta[], bao: EMPTY }, (m, f) => {
      if (f.field === 2) {
        m.chunks.push(
          decodeWith(asBytes(f, 'chunks'), { digest: EMPTY, size: 0 }, (c, g) => {
            if (g.field === 1) c.digest = asBytes(g, 'chunk.digest')
            else if (g.field === 2) c.size = asUint(g, 'chunk.size')
          }),
        )
      } else if (f.field === 3) m.bao = asBytes(f, 'bao')
    }),
}

/** ReadBlobRequest and PutBlobResponse: a lone `bytes digest = 1`. */
export const digestMessage = {
  encode: (digest: Uint8Array) => encode((w) => w.bytes(1, digest)),
  decode: (b: Uint8Array): Uint8Array =>
    decodeWith(b, { digest: EMPTY }, (m, f) => {
      if (f.field === 1) m.digest = asBytes(f, 'digest')
    }).digest,
}

/** BlobChunk: `bytes data = 1`. */
export const blobChunk = {
  encode: (data: Uint8Array) => encode((w) => w.bytes(1, data)),
  /**
   * What comes before a BlobChunk's data of `size` bytes (its field 1 tag
   * and length), written into `out` at `at`; returns where the data goes.
   * A sender that frames the data itself copies it once, or not at all.
   */
  head(out: Uint8Array, at: number, size: number): number {
    out[at] = 0x0a
    return writeVarint(out, at + 1, size)
  },
  decode: (b: Uint8Array): Uint8Array =>
    decodeWith(b, { data: EMPTY }, (m, f) => {
      if (f.field === 1) m.data = asBytes(f, 'data')
    }).data,
}

// --- DirectoryService ------------------------------------------------------------

export interface GetDirectoryRequest {
  /** The `by_what` oneof: undefined when unset. */
  digest?: Uint8Array
  recursive: boolean
}
export const getDirectoryRequest = {
  encode: (m: GetDirectoryRequest) =>
    encode((w) => {
      if (m.digest) w.bytesAlways(1, m.digest)
      w.bool(2, m.recursive)
    }),
  decode: (b: Uint8Array): GetDirectoryRequest =>
    decodeWith(b, { digest: undefined, recursive: false } as GetDirectoryRequest, (m, f) => {
      if (f.field === 1) m.digest = asBytes(f, 'digest')
      else if (f.field === 2) m.recursive = asUint(f, 'recursive') !== 0
    }),
}

/** PutDirectoryResponse: `bytes root_digest = 1`. */
export const putDirectoryResponse = digestMessage

// --- PathInfoService ------------------------------------------------------------

export interface GetPathInfoRequest {
  /** The `by_what` oneof: undefined when unset. */
  byOutputHash?: Uint8Array
}
export const getPathInfoRequest = {
  encode: (m: GetPathInfoRequest) =>
    encode((w) => {
      if (m.byOutputHash) w.bytesAlways(1, m.byOutputHash)
    }),
  decode: (b: Uint8Array): GetPathInfoRequest =>
    decodeWith(b, {} as GetPathInfoRequest, (m, f) => {
      if (f.field === 1) m.byOutputHash = asBytes(f, 'by_output_hash')
    }),
}

export interface CalculateNarResponse {
  narSize: number
  narSha256: Uint8Array
}
export const calculateNarResponse = {
  encode: (m: CalculateNarResponse) =>
    encode((w) => {
      w.uint(1, m.narSize)
      w.bytes(2, m.narSha256)
    }),
  decode: (b: Uint8Array): CalculateNarResponse =>
    decodeWith(b, { narSize: 0, narSha256: EMPTY }, (m, f) => {
      if (f.field === 1) m.narSize = asUint(f, 'nar_size')
      else if (f.field === 2) m.narSha256 = asBytes(f, 'nar_sha256')
    }),
}

/** ListPathInfoRequest and other field-less messages. */
export const emptyMessage = {
  encode: (_: unknown) => EMPTY,
  decode: (b: Uint8Array): Record<string, never> => decodeWith(b, {}, () => {}),
}
