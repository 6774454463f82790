import { blobChunk } from '../grpc/messages.js'
import { Status, StatusError } from '../grpc/status.js'

/**
 * The data of a blob Put (a client stream of BlobChunk messages) read
 * straight from the call's HTTP/2 DATA pieces into `out`, a buffer the
 * caller reuses: each piece yielded is a view of it, full except the last,
 * valid until the next is asked for.
 *
 * Through grpc-js every 1 MiB message was joined into a fresh buffer and
 * decoded into a view of it: at 1.5-3 ms per MiB of fresh pages here, and
 * the garbage of 256 such buffers, that was most of what a large Put cost
 * the daemon above a local put. Here the data is copied once, into memory
 * already touched.
 *
 * Every message is checked as grpc-js and blobChunk.decode check it: a
 * length over `maxMessageBytes` is RESOURCE_EXHAUSTED before any of it is
 * read (nothing larger than `out` and one message is ever held), and a
 * message that is not the plain form (one field 1 spanning the whole
 * message, as every sender writes it) is gathered whole and decoded by
 * blobChunk.decode, so unknown fields, repeated fields and malformed
 * protobuf get the very answer they got. A stream that ends inside a
 * message fails (grpc-js would drop the cut-off message and call the Put
 * complete).
 */
export async function* putData(pieces: AsyncIterable<Buffer>, out: Buffer, maxMessageBytes: number): AsyncGenerator<Uint8Array> {
  /** The gRPC prefix (flag, length) and the head of the protobuf (tag, data length), gathered across pieces. */
  const head = Buffer.alloc(PREFIX + PLAIN_HEAD)
  let headHave = 0
  /** The current message's length, from its prefix; and its protobuf head's bytes wanted (min(length, PLAIN_HEAD)). */
  let length = 0
  let headWant = PREFIX
  /** Data bytes of a plain message still to come. */
  let dataLeft = 0
  /** A message not in the plain form, gathered whole for blobChunk.decode. */
  let whole: Buffer | undefined
  let wholeHave = 0
  let fill = 0

  /** Copies `src` (data gathered with a head, or decoded from a whole message) into `out`; a full `out` is yielded (and filled again from its start). */
  async function* put(src: Uint8Array): AsyncGenerator<Uint8Array> {
    for (let at = 0; at < src.length; ) {
      const n = Math.min(src.length - at, out.length - fill)
      out.set(n === src.length ? src : src.subarray(at, at + n), fill)
      fill += n
      at += n
      if (fill === out.length) {
        yield out
        fill = 0
      }
    }
  }

  for await (const piece of pieces) {
    for (let at = 0; at < piece.length; ) {
      if (dataLeft > 0) {
        // The hot path, a DATA piece at a time (~16 KiB): copied in place, no generator per piece.
        const n = Math.min(dataLeft, piece.length - at, out.length - fill)
        out.set(piece.subarray(at, at + n), fill)
        fill += n
        dataLeft -= n
        at += n
        if (fill === out.length) {
          yield out
          fill = 0
        }
        continue
      }
      if (whole) {
        const n = Math.min(whole.length - wholeHave, piece.length - at)
        piece.copy(whole, wholeHave, at, at + n)
        wholeHave += n
        at += n
        if (wholeHave === whole.length) {
          const data = blobChunk.decode(whole)
          whole = undefined
          yield* put(data)
        }
        continue
      }
      const n = Math.min(headWant - headHave, piece.length - at)
      piece.copy(head, headHave, at, at + n)
      headHave += n
      at += n
      if (headHave < headWant) continue
      if (headWant === PREFIX) {
        length = head.readUInt32BE(1)
        if (length > maxMessageBytes) throw new StatusError(Status.RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs ${maxMessageBytes})`)
        // An empty message is an empty BlobChunk: no data, and the next prefix follows.
        if (length === 0) headHave = 0
        else headWant = PREFIX + Math.min(length, PLAIN_HEAD)
        continue
      }
      // The protobuf's head is here: the plain form streams on, anything else is gathered whole.
      const body = head.subarray(PREFIX, headWant)
      const dataAt = plainDataAt(body, length)
      headHave = 0
      headWant = PREFIX
      if (dataAt === undefined) {
        whole = Buffer.allocUnsafe(length)
        wholeHave = body.copy(whole)
        if (wholeHave === length) {
          const data = blobChunk.decode(whole)
          whole = undefined
          yield* put(data)
        }
        continue
      }
      // Data bytes already gathered with the head (a message shorter than PLAIN_HEAD, or a head shorter than it).
      const early = body.subarray(dataAt)
      dataLeft = length - dataAt - early.length
      yield* put(early)
    }
  }
  if (headHave > 0 || dataLeft > 0 || whole) throw new StatusError(Status.INVALID_ARGUMENT, 'the stream ended inside a message')
  if (fill > 0) yield out.subarray(0, fill)
}

/** A gRPC message's prefix: compression flag (ignored, as grpc-js ignores it in a request without grpc-encoding; compressed calls are left to grpc-js by takeRequestStream) and length. */
const PREFIX = 5
/** A BlobChunk's field 1 tag and its length, as a varint of up to 5 bytes (any length a message may have). */
const PLAIN_HEAD = 6

/**
 * Where a BlobChunk of `length` bytes starting `body` (its first
 * min(length, PLAIN_HEAD) bytes) has its data, if it is the plain form:
 * field 1, length-delimited, whose data ends where the message ends.
 * Undefined for anything else.
 */
function plainDataAt(body: Uint8Array, length: number): number | undefined {
  if (body.length < 2 || body[0] !== 0x0a) return undefined
  let size = 0
  for (let i = 1, shift = 0; i < body.length; i++, shift += 7) {
    const b = body[i]!
    size += (b & 0x7f) * 2 ** shift
    if (b < 0x80) return i + 1 + size === length ? i + 1 : undefined
  }
  return undefined
}
