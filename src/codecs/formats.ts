/**
 * The compressions Nix 2.8 writes into binary caches (`?compression=X`),
 * with the file extension Nix gives the NAR and the bytes that open the
 * compressed stream. Nix reads `none` and `br` by name and everything else
 * through libarchive, which goes by those first bytes, not by the label.
 */
export interface Format {
  name: string
  /** Nix's NAR file name ending for this compression (`nar/<filehash><ext>`). */
  extension: string
  /** Leading bytes that identify the format; undefined where only the label tells (none, br). */
  magic?: Uint8Array
}

const bytes = (...b: number[]) => Uint8Array.from(b)

export const FORMATS: readonly Format[] = [
  { name: 'none', extension: '.nar' },
  { name: 'br', extension: '.nar.br' },
  { name: 'xz', extension: '.nar.xz', magic: bytes(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00) },
  { name: 'bzip2', extension: '.nar.bz2', magic: bytes(0x42, 0x5a, 0x68) },
  { name: 'zstd', extension: '.nar.zst', magic: bytes(0x28, 0xb5, 0x2f, 0xfd) },
  // Nix names only xz, bzip2, zstd, lzip, lz4 and br in the NAR's file name; gzip, compress and lzma keep `.nar`.
  { name: 'gzip', extension: '.nar', magic: bytes(0x1f, 0x8b) },
  { name: 'lzip', extension: '.nar.lzip', magic: bytes(0x4c, 0x5a, 0x49, 0x50) },
  { name: 'lz4', extension: '.nar.lz4', magic: bytes(0x04, 0x22, 0x4d, 0x18) },
  { name: 'compress', extension: '.nar', magic: bytes(0x1f, 0x9d) },
  // The legacy .lzma ("alone") format has no magic; libarchive recognises its header's shape instead.
  { name: 'lzma', extension: '.nar' },
]

/** Longest magic: how many bytes detection waits for. */
export const MAGIC_LEN = Math.max(...FORMATS.map((f) => f.magic?.length ?? 0))

export function formatNamed(name: string): Format | undefined {
  return FORMATS.find((f) => f.name === name)
}

/**
 * The format whose stream starts with `head`, as libarchive would pick it:
 * magic bytes first, then the .lzma header's shape (a properties byte below
 * 225 and a power-of-two-ish dictionary size).
 */
export function detectFormat(head: Uint8Array): Format | undefined {
  const byMagic = FORMATS.find((f) => f.magic && head.length >= f.magic.length && f.magic.every((b, i) => head[i] === b))
  if (byMagic) return byMagic
  if (looksLikeLzmaAlone(head)) return formatNamed('lzma')
  return undefined
}

function looksLikeLzmaAlone(head: Uint8Array): boolean {
  if (head.length < 5 || head[0]! >= 9 * 5 * 5) return false
  const dict = Buffer.from(head.subarray(1, 5)).readUInt32LE(0)
  // liblzma's encoders write 2^n or 2^n + 2^(n-1) dictionary sizes.
  return dict >= 4096 && (Number.isInteger(Math.log2(dict)) || Number.isInteger(Math.log2(dict / 3)))
}
