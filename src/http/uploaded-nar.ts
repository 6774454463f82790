import type { Duplex } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { decompressor, FORMATS } from '../codecs/index.js'
import { detectFormat } from '../codecs/formats.js'
import { InvalidInputError } from '../errors.js'

/** How every NAR begins: the length-prefixed string "nix-archive-1". */
const NAR_MAGIC = Buffer.concat([Buffer.from([13, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('nix-archive-1')])

/**
 * The compression an uploaded NAR's file name suggests (`.nar.xz` → xz),
 * or undefined for a name Nix never writes. A plain `.nar` is what Nix
 * writes for none, and for gzip, compress and lzma as well.
 */
export function compressionOfExtension(ext: string): string | undefined {
  return FORMATS.find((f) => f.extension === ext)?.name
}

/**
 * The NAR inside an uploaded file, decompressed as it streams: the label
 * from the file name picks the family and the bytes decide, as Nix's
 * reader does; a `.nar` that does not start as a NAR is decoded by its
 * leading bytes (Nix gives gzip, compress and lzma that name too).
 * `onRaw` is called before the first byte when the file is the NAR itself.
 */
export async function* uploadedNar(file: AsyncIterable<Uint8Array>, label: string, onRaw?: () => void): AsyncGenerator<Uint8Array> {
  const it = file[Symbol.asyncIterator]()
  const head: Uint8Array[] = []
  let headLen = 0
  while (headLen < NAR_MAGIC.length) {
    const r = await it.next()
    if (r.done) break
    head.push(r.value)
    headLen += r.value.length
  }
  const all = (async function* () {
    try {
      yield* head
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value
    } finally {
      await it.return?.()
    }
  })()
  if (label === 'none') {
    const first = Buffer.concat(head)
    if (first.subarray(0, NAR_MAGIC.length).equals(NAR_MAGIC)) {
      onRaw?.()
      return yield* all
    }
    if (!detectFormat(first)) throw new InvalidInputError('the uploaded .nar is neither a NAR nor compressed data Nix can read')
  }
  // gzip's decoder goes by the bytes: gzip, compress or lzma, or a clear error for anything else.
  yield* through(decompressor(label === 'none' ? 'gzip' : label), all)
}

/** `src` through a Node transform, read as it is written (backpressure both ways); leaving early destroys it. */
async function* through(codec: Duplex, src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  // A failure on either side destroys the codec, and the loop below throws it.
  const feeding = pipeline(src, codec).catch(() => {})
  try {
    for await (const chunk of codec as AsyncIterable<Uint8Array>) yield chunk
    await feeding
  } finally {
    codec.destroy()
  }
}
