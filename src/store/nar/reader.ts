import { invalidNameReason, invalidTargetReason, MAX_NAME_LEN, MAX_TARGET_LEN, printableName } from '../../castore/directory.js'
import { compareBytes } from '../../castore/digest.js'
import { InvalidInputError } from '../../errors.js'
import type { ByteReader } from './byte-reader.js'
import { padLen, T } from './encoder.js'

/**
 * What the parser calls as it walks a NAR depth-first. `file` must consume
 * `contents` (the parser drains whatever is left). `directory` receives
 * its children in NAR order once all of them are parsed.
 */
export interface NarVisitor<N> {
  file(executable: boolean, size: number, contents: AsyncIterable<Uint8Array>): Promise<N>
  symlink(target: Uint8Array): Promise<N>
  directory(entries: Array<{ name: Uint8Array; node: N }>): Promise<N>
}

/** Largest file we accept; JS numbers stay exact below 2^53. */
const MAX_FILE_SIZE = Number.MAX_SAFE_INTEGER

function bad(msg: string): InvalidInputError {
  return new InvalidInputError(`invalid NAR: ${msg}`)
}

async function readLen(r: ByteReader, max: number, what: string): Promise<number> {
  const b = await r.read(8)
  // `+` for the top byte: `|` would make the value a negative int32.
  const lo = (b[0]! | (b[1]! << 8) | (b[2]! << 16)) + b[3]! * 0x1000000
  const hi = (b[4]! | (b[5]! << 8) | (b[6]! << 16)) + b[7]! * 0x1000000
  if (hi >= 0x200000) throw bad(`${what} length too large`)
  const n = hi * 0x1_0000_0000 + lo
  if (n > max) throw bad(`${what} longer than ${max} bytes`)
  return n
}

async function readPadding(r: ByteReader, len: number): Promise<void> {
  const p = padLen(len)
  if (p === 0) return
  const pad = await r.read(p)
  for (const byte of pad) if (byte !== 0) throw bad('non-zero padding')
}

/** A length-prefixed, padded string of at most `max` bytes, copied out. */
async function readStr(r: ByteReader, max: number, what: string): Promise<Uint8Array> {
  const n = await readLen(r, max, what)
  const data = Uint8Array.from(await r.read(n))
  await readPadding(r, n)
  return data
}

async function expect(r: ByteReader, token: Uint8Array, where: string): Promise<void> {
  const n = await readLen(r, 64, 'token')
  const got = await r.read(n)
  if (compareBytes(got, token) !== 0) {
    throw bad(`expected ${JSON.stringify(Buffer.from(token).toString())} ${where}, got ${printableName(got)}`)
  }
  await readPadding(r, n)
}

/**
 * Parses a whole NAR (and requires the input to end right after it). The
 * Directories being parsed are kept on an explicit stack, so nesting is
 * bounded only by the input (as in Nix), not by the call stack.
 */
export async function readNar<N>(r: ByteReader, v: NarVisitor<N>): Promise<N> {
  await expect(r, T.magic, 'at start (not a NAR)').catch((e: Error) => {
    // A text file or a compressed NAR fails on the first length: say what it is not.
    throw /token (length too large|longer than)/.test(e.message) ? bad('not a NAR: it does not start with "nix-archive-1" (a compressed NAR must be decompressed first)') : e
  })
  /** Open Directories, innermost last: their entries so far and the name of the entry being parsed. */
  const open: Array<{ entries: Array<{ name: Uint8Array; node: N }>; name?: Uint8Array }> = []
  for (;;) {
    const started = await readNodeStart(r, v)
    let node: N
    if (started === DIRECTORY) {
      const dir: (typeof open)[number] = { entries: [] }
      if (await nextEntry(r, dir)) {
        open.push(dir)
        continue
      }
      node = await v.directory([])
    } else {
      node = started.node
    }
    // A node is complete: hand it to its Directory, and close every Directory that ends here.
    for (;;) {
      const top = open.at(-1)
      if (!top) {
        if (!(await r.atEnd())) throw bad('trailing data after the end of the archive')
        return node
      }
      await expect(r, T.close, 'to close the entry')
      top.entries.push({ name: top.name!, node })
      if (await nextEntry(r, top)) break
      open.pop()
      node = await v.directory(top.entries)
    }
  }
}

const DIRECTORY = Symbol('directory')

/** `( type <type>` and, for a file or symlink, the rest of the node; a Directory only opens. */
async function readNodeStart<N>(r: ByteReader, v: NarVisitor<N>): Promise<{ node: N } | typeof DIRECTORY> {
  await expect(r, T.open, 'to open a node')
  await expect(r, T.type, 'after "("')
  const type = await readStr(r, 16, 'node type')
  switch (Buffer.from(type).toString('latin1')) {
    case 'regular':
      return { node: await readRegular(r, v) }
    case 'symlink': {
      await expect(r, T.target, 'in symlink')
      const target = await readStr(r, MAX_TARGET_LEN, 'symlink target')
      const why = invalidTargetReason(target)
      if (why) throw bad(why)
      await expect(r, T.close, 'after symlink target')
      return { node: await v.symlink(target) }
    }
    case 'directory':
      return DIRECTORY
    default:
      throw bad(`unknown node type ${printableName(type)}`)
  }
}

/**
 * Reads up to the node of a Directory's next entry (`entry ( name <name>
 * node`), checking the name and its order; false at the Directory's `)`.
 */
async function nextEntry(r: ByteReader, dir: { entries: unknown[]; name?: Uint8Array }): Promise<boolean> {
  const tok = await readStr(r, 16, 'token')
  if (compareBytes(tok, T.close) === 0) return false
  if (compareBytes(tok, T.entry) !== 0) throw bad(`expected "entry" or ")", got ${printableName(tok)}`)
  await expect(r, T.open, 'after "entry"')
  await expect(r, T.name, 'in entry')
  const name = await readStr(r, MAX_NAME_LEN, 'entry name')
  const why = invalidNameReason(name)
  if (why) throw bad(`invalid entry ${printableName(name)}: ${why}`)
  const prev = dir.name
  if (prev) {
    const c = compareBytes(prev, name)
    if (c === 0) throw bad(`duplicate entry ${printableName(name)}`)
    if (c > 0) throw bad(`entry ${printableName(name)} is out of order (after ${printableName(prev)})`)
  }
  dir.name = name
  await expect(r, T.node, 'in entry')
  return true
}

async function readRegular<N>(r: ByteReader, v: NarVisitor<N>): Promise<N> {
  let tok = await readStr(r, 16, 'token')
  let executable = false
  if (compareBytes(tok, T.executable) === 0) {
    executable = true
    const marker = await readStr(r, 16, 'executable marker')
    if (marker.length !== 0) throw bad('non-empty executable marker')
    tok = await readStr(r, 16, 'token')
  }
  if (compareBytes(tok, T.contents) !== 0) throw bad(`expected "contents", got ${printableName(tok)}`)
  const size = await readLen(r, MAX_FILE_SIZE, 'file')
  const body = r.stream(size)
  const node = await v.file(executable, size, body)
  // Whatever the visitor left unread must still be consumed (and hashed).
  for await (const _ of body);
  await readPadding(r, size)
  await expect(r, T.close, 'after file contents')
  return node
}
