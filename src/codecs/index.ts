import { Duplex, PassThrough } from 'node:stream'
import zlib from 'node:zlib'
import { InvalidInputError, UsageError } from '../errors.js'
import { childCodec } from './child-codec.js'
import { type Format, MAGIC_LEN, detectFormat, formatNamed, FORMATS } from './formats.js'

export { FORMATS, type Format } from './formats.js'

/** What we compress NARs with when writing a cache: Nix's common choices. */
export const WRITABLE = ['none', 'xz', 'zstd', 'bzip2', 'br', 'gzip'] as const
export type WritableCompression = (typeof WRITABLE)[number]

/** Every compression a cache may name (Nix 2.8 reads them all). */
export const READABLE = FORMATS.map((f) => f.name)

/** Nix's NAR file name ending for `compression` (`.nar.xz`, `.nar.zst`, …). */
export function narFileExtension(compression: string): string {
  const f = formatNamed(compression || 'none')
  if (!f) throw new UsageError(`unknown compression ${JSON.stringify(compression)}; known: ${READABLE.join(', ')}`)
  return f.extension
}

export function isWritable(c: string): c is WritableCompression {
  return (WRITABLE as readonly string[]).includes(c)
}

/**
 * Compresses a stream. Brotli at quality 5: Nix's default (11) runs at
 * well under 1 MiB/s, 5 keeps most of the ratio at 30× the speed.
 */
export function compressor(compression: WritableCompression): Duplex {
  switch (compression) {
    case 'none':
      return new PassThrough()
    case 'br':
      return zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 5 } })
    case 'gzip':
      return zlib.createGzip()
    case 'xz':
      return childCodec('xz', ['-c', '-6'], 'xz compression')
    case 'zstd':
      return childCodec('zstd', ['-c', '-3', '-q'], 'zstd compression')
    case 'bzip2':
      return childCodec('bzip2', ['-c'], 'bzip2 compression')
  }
}

/**
 * Decompresses a stream labelled `compression` as Nix does: `none` (or an
 * empty label) passes through, `br` is brotli by name, and every other label
 * goes by the stream's first bytes, as libarchive does (zstd data labelled
 * xz decodes; a raw NAR labelled xz is an error).
 */
export function decompressor(compression: string): Duplex {
  if (compression === '' || compression === 'none') return new PassThrough()
  if (compression === 'br') return zlib.createBrotliDecompress()
  if (!formatNamed(compression)) throw new InvalidInputError(`unknown compression ${JSON.stringify(compression)}; known: ${READABLE.join(', ')}`)
  return detectingDecoder(compression)
}

function decoderFor(f: Format): Duplex {
  switch (f.name) {
    case 'gzip':
      return zlib.createGunzip()
    case 'xz':
      return childCodec('xz', ['-dc'], 'xz decompression')
    case 'lzma':
      return childCodec('xz', ['--format=lzma', '-dc'], 'lzma decompression')
    case 'lzip':
      return childCodec('xz', ['--format=lzip', '-dc'], 'lzip decompression', lzipUnsupported)
    case 'bzip2':
      return childCodec('bzip2', ['-dc'], 'bzip2 decompression')
    case 'zstd':
      return childCodec('zstd', ['-dc', '-q'], 'zstd decompression')
    case 'lz4':
      return childCodec('lz4', ['-dc'], 'lz4 decompression')
    case 'compress':
      // gzip reads the old `compress` (.Z) format too.
      return childCodec('gzip', ['-dc'], 'compress decompression')
    default:
      throw new InvalidInputError(`cannot decompress ${f.name}`)
  }
}

/** xz reads lzip from 5.4 on; an older one names no format it lacks, so say it here. */
function lzipUnsupported(stderr: string): string | undefined {
  if (/Unknown file format type|Unsupported file format/i.test(stderr)) return `this xz cannot read lzip (xz 5.4 or newer can): ${stderr.trim().split('\n')[0]}`
  return undefined
}

/** Holds the first bytes back until they tell the format, then runs the matching decoder. */
function detectingDecoder(label: string): Duplex {
  let head: Buffer[] = []
  let headLen = 0
  let inner: Duplex | undefined
  const out = new Duplex({
    write(chunk: Buffer, _enc, done) {
      if (inner) return void (inner.write(chunk) ? done() : inner.once('drain', () => done()))
      head.push(chunk)
      headLen += chunk.length
      if (headLen < MAGIC_LEN) return done()
      start(done)
    },
    final(done) {
      if (inner) return void inner.end(done)
      if (headLen === 0) {
        out.push(null)
        return done()
      }
      start((e) => (e ? done(e) : inner!.end(done)))
    },
    read() {
      inner?.resume()
    },
    destroy(err, done) {
      inner?.destroy()
      done(err)
    },
  })
  function start(done: (e?: Error | null) => void) {
    const first = Buffer.concat(head)
    head = []
    const f = detectFormat(first)
    if (!f) return done(new InvalidInputError(`the NAR labelled ${label} is not compressed data that Nix can read (unknown leading bytes)`))
    try {
      inner = decoderFor(f)
    } catch (e) {
      return done(e as Error)
    }
    inner.on('data', (c: Buffer) => {
      if (!out.push(c)) inner!.pause()
    })
    inner.once('end', () => out.push(null))
    inner.once('error', (e) => out.destroy(e))
    inner.write(first) ? done() : inner.once('drain', () => done())
  }
  return out
}
