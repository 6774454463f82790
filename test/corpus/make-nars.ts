/**
 * Generates the NAR files of the bad-input corpus (test/corpus/nar/), plus
 * `seed.nar`, the one good NAR every store in the corpus test starts from.
 * Deterministic: the same bytes on every run. Run by hand after changing a
 * case, and commit the result:
 *
 *   node --import tsx test/corpus/make-nars.ts
 *
 * test/e2e/bad-input.test.ts checks that the committed files are exactly
 * what narCorpus() returns, so the two cannot drift apart. Built token by
 * token with test/helpers/nar.ts, independently of the encoder under test.
 * One malformation per file; a file entry comes first wherever the format
 * allows it, so a blob is already staged when the reader fails.
 */
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { directory, entry, nar, regular, str, symlink, toks } from '../helpers/nar.js'

export const NAR_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'nar')

/** A raw 8-byte little-endian length field. */
function len(n: bigint | number): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt(n))
  return b
}

const cat = (...parts: Buffer[]) => Buffer.concat(parts)
const MAGIC = str('nix-archive-1')
/** A valid file entry that sorts before everything the cases add after it. */
const first = () => entry('0-first', regular('staged before the error'))
/** magic + a directory that opens with a valid file entry, then `rest`, unterminated. */
const inDir = (...rest: Buffer[]) => cat(MAGIC, toks('(', 'type', 'directory'), first(), ...rest)
/** magic + a root regular file: `(`, `type`, `regular`, then `rest`. */
const inRegular = (...rest: Buffer[]) => cat(MAGIC, toks('(', 'type', 'regular'), ...rest)
/** magic + a root symlink: `(`, `type`, `symlink`, then `rest`. */
const inSymlink = (...rest: Buffer[]) => cat(MAGIC, toks('(', 'type', 'symlink'), ...rest)

/** The good tree the stores are seeded with: a.txt, link -> a.txt, sub/b.txt. */
export function seedNar(): Buffer {
  return nar(
    directory(
      entry('a.txt', regular('Hello World!')),
      entry('link', symlink('a.txt')),
      entry('sub', directory(entry('b.txt', regular('abc')))),
    ),
  )
}

/** File name (under nar/) -> bytes. Each name says what is wrong with the file. */
export function narCorpus(): Map<string, Buffer> {
  const hello = nar(regular('hello world'))
  const good = nar(directory(entry('a', regular('x')), entry('b', regular('y'))))
  const files: Array<[string, Buffer]> = [
    ['seed.nar', seedNar()],

    // --- the magic, and the start of the root node
    ['empty-file.nar', Buffer.alloc(0)],
    ['magic-wrong-version.nar', cat(str('nix-archive-2'), regular('x'))],
    ['magic-is-plain-text.nar', Buffer.from('hello, this is a text file and not a NAR at all\n')],
    // What `nix copy --to file://` writes by default: an xz stream header (CRC64 check), then compressed data.
    ['magic-is-xz-compressed-nar.nar', cat(Buffer.from('fd377a585a000004e6d6b446', 'hex'), Buffer.from('not really compressed data, only its header matters'))],
    ['magic-truncated-in-length-field.nar', MAGIC.subarray(0, 4)],
    ['magic-truncated-in-string.nar', MAGIC.subarray(0, 12)],
    ['magic-truncated-in-padding.nar', MAGIC.subarray(0, 22)],
    ['magic-nonzero-padding.nar', cat(str('nix-archive-1', { pad: [0, 0, 1] }), regular('x'))],
    ['magic-token-length-over-64.nar', cat(len(1000), Buffer.alloc(1000))],
    ['magic-token-length-over-2^53.nar', cat(len(0xffff_ffff_ffff_ffffn), Buffer.alloc(16))],
    ['truncated-after-magic.nar', MAGIC],
    ['node-missing-open-paren.nar', cat(MAGIC, toks('type', 'regular', 'contents', str('x'), ')'))],
    ['truncated-after-open-paren.nar', cat(MAGIC, toks('('))],
    ['node-wrong-type-keyword.nar', cat(MAGIC, toks('(', 'kind', 'regular', 'contents', str('x'), ')'))],
    ['truncated-in-type-keyword.nar', cat(MAGIC, toks('('), str('type').subarray(0, 10))],
    ['truncated-after-type-keyword.nar', cat(MAGIC, toks('(', 'type'))],
    ['truncated-in-node-type.nar', cat(MAGIC, toks('(', 'type'), str('regular').subarray(0, 12))],
    ['node-type-unknown-fifo.nar', nar(toks('(', 'type', 'fifo', ')'))],
    ['node-type-empty.nar', nar(toks('(', 'type', '', ')'))],
    ['node-type-over-16-bytes.nar', nar(toks('(', 'type', 'regular-but-much-too-long', ')'))],

    // --- regular files
    ['regular-unknown-keyword.nar', inRegular(toks('contentz', str('x'), ')'))],
    ['regular-missing-contents.nar', inRegular(toks(')'))],
    ['regular-keyword-over-16-bytes.nar', inRegular(toks('contents-and-then-some', str('x'), ')'))],
    ['regular-truncated-after-type.nar', inRegular()],
    ['regular-truncated-in-contents-length.nar', inRegular(toks('contents'), len(11).subarray(0, 4))],
    ['regular-truncated-mid-contents.nar', inRegular(toks('contents'), len(11), Buffer.from('hello'))],
    ['regular-truncated-in-padding.nar', inRegular(toks('contents'), len(5), Buffer.from('hello'), Buffer.alloc(1))],
    ['regular-nonzero-padding.nar', inRegular(toks('contents', str('hello', { pad: [0, 7, 0] }), ')'))],
    ['regular-truncated-before-close.nar', inRegular(toks('contents', str('hello')))],
    ['regular-extra-token-before-close.nar', inRegular(toks('contents', str('hello'), 'contents', str('again'), ')'))],
    ['regular-contents-length-beyond-end.nar', inRegular(toks('contents'), len(1 << 20), Buffer.from('only a few bytes'))],
    ['regular-contents-length-over-2^53.nar', inRegular(toks('contents'), len(0xffff_ffff_ffff_ffffn), Buffer.from('x'))],
    ['executable-marker-with-value.nar', inRegular(toks('executable', 'yes', 'contents', str('x'), ')'))],
    ['executable-marker-twice.nar', inRegular(toks('executable', '', 'executable', '', 'contents', str('x'), ')'))],
    ['executable-marker-truncated.nar', inRegular(toks('executable'))],
    ['executable-marker-after-contents.nar', inRegular(toks('contents', str('x'), 'executable', '', ')'))],

    // --- symlinks
    ['symlink-missing-target-keyword.nar', inSymlink(toks('contents', str('x'), ')'))],
    ['symlink-truncated-in-target.nar', inSymlink(toks('target'), str('/nix/store/somewhere-else').subarray(0, 20))],
    ['symlink-empty-target.nar', nar(symlink(''))],
    ['symlink-target-with-nul.nar', nar(symlink('a\0b'))],
    ['symlink-target-over-4095-bytes.nar', nar(symlink('t'.repeat(4096)))],
    ['symlink-truncated-before-close.nar', inSymlink(toks('target', str('a.txt')))],
    ['symlink-extra-token-before-close.nar', inSymlink(toks('target', str('a.txt'), 'target', str('b.txt'), ')'))],

    // --- directories and their entries
    ['directory-truncated-after-type.nar', cat(MAGIC, toks('(', 'type', 'directory'))],
    ['directory-unknown-keyword.nar', inDir(toks('entri', '(', 'name', 'x', 'node'), regular('x'), toks(')', ')'))],
    ['directory-truncated-after-entry.nar', inDir(toks('entry'))],
    ['directory-keyword-over-16-bytes.nar', inDir(toks('entry-but-much-too-long', '(', 'name', 'x', 'node'), regular('x'), toks(')', ')'))],
    ['directory-not-closed-at-end.nar', inDir()],
    ['entry-missing-open-paren.nar', inDir(toks('entry', 'name', 'x', 'node'), regular('x'), toks(')', ')'))],
    ['entry-wrong-name-keyword.nar', inDir(toks('entry', '(', 'nome', 'x', 'node'), regular('x'), toks(')', ')'))],
    ['entry-truncated-in-name.nar', inDir(toks('entry', '(', 'name'), str('hello').subarray(0, 11))],
    ['entry-name-empty.nar', nar(directory(first(), entry('', regular('x'))))],
    ['entry-name-dot.nar', nar(directory(first(), entry('.', regular('x'))))],
    ['entry-name-dotdot.nar', nar(directory(first(), entry('..', regular('x'))))],
    ['entry-name-with-slash.nar', nar(directory(first(), entry('a/b', regular('x'))))],
    ['entry-name-with-nul.nar', nar(directory(first(), entry(Buffer.from('a\0b'), regular('x'))))],
    ['entry-name-over-255-bytes.nar', nar(directory(first(), entry('n'.repeat(256), regular('x'))))],
    ['entry-name-length-over-2^53.nar', inDir(toks('entry', '(', 'name'), len(0x8000_0000_0000_0000n), Buffer.from('x'))],
    ['entry-name-nonzero-padding.nar', inDir(toks('entry', '(', 'name', str('abc', { pad: [0, 0, 0, 0, 1] }), 'node'), regular('x'), toks(')', ')'))],
    ['entry-missing-node-keyword.nar', inDir(toks('entry', '(', 'name', 'x'), regular('x'), toks(')', ')'))],
    ['entry-truncated-after-node-keyword.nar', inDir(toks('entry', '(', 'name', 'x', 'node'))],
    ['entry-not-closed.nar', inDir(toks('entry', '(', 'name', 'x', 'node'), regular('x'), toks('entry', '(', 'name', 'y', 'node'), regular('y'), toks(')', ')'))],
    ['entry-truncated-before-close.nar', inDir(toks('entry', '(', 'name', 'x', 'node'), regular('x'))],
    ['entries-unsorted.nar', nar(directory(entry('b', regular('x')), entry('a', regular('y'))))],
    ['entries-unsorted-uppercase-after-lowercase.nar', nar(directory(entry('a', regular('x')), entry('B', regular('y'))))],
    ['entries-duplicate-files.nar', nar(directory(entry('a', regular('x')), entry('a', regular('y'))))],
    ['entries-duplicate-file-and-directory.nar', nar(directory(entry('a', regular('x')), entry('a', directory())))],
    ['entries-unsorted-in-subdirectory.nar', nar(directory(first(), entry('sub', directory(entry('z', regular('x')), entry('y', regular('y'))))))],
    ['subdirectory-truncated.nar', nar(directory(first(), entry('sub', directory(entry('deeper', directory(entry('x', regular('x')))))))).subarray(0, 700)],

    // --- after the end
    ['trailing-zero-bytes.nar', cat(good, Buffer.alloc(8))],
    ['trailing-single-byte.nar', cat(hello, Buffer.from('\n'))],
    ['trailing-second-nar.nar', cat(hello, hello)],
  ]
  const out = new Map<string, Buffer>()
  for (const [name, bytes] of files) {
    if (out.has(name)) throw new Error(`duplicate corpus file ${name}`)
    out.set(name, bytes)
  }
  return out
}

/** Rewrites nar/ to exactly the generated set (stale files removed). */
function main(): void {
  const files = narCorpus()
  fs.mkdirSync(NAR_DIR, { recursive: true })
  for (const f of fs.readdirSync(NAR_DIR)) if (!files.has(f)) fs.rmSync(path.join(NAR_DIR, f))
  for (const [name, bytes] of files) fs.writeFileSync(path.join(NAR_DIR, name), bytes)
  process.stdout.write(`wrote ${files.size} files to ${path.relative(process.cwd(), NAR_DIR) || '.'}\n`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) main()
