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

/*
 * The parse is a sequence of synchronous steps over the bytes buffered
 * (ByteReader.take): run at once when they are there (no promise per token,
 * which cost more than the parse itself for a tree of small files), else
 * again once more bytes came (ByteReader.more). Only a file's contents and
 * the visitor's calls are awaited.
 */

function readLen(r: ByteReader, max: number, what: string): number {
  const b = r.take(8)
  // `+` for the top byte: `|` would make the value a negative int32.
  const lo = (b[0]! | (b[1]! << 8) | (b[2]! << 16)) + b[3]! * 0x1000000
  const hi = (b[4]! | (b[5]! << 8) | (b[6]! << 16)) + b[7]! * 0x1000000
  if (hi >= 0x200000) throw bad(`${what} length too large`)
  const n = hi * 0x1_0000_0000 + lo
  if (n > max) throw bad(`${what} longer than ${max} bytes`)
  return n
}

function readPadding(r: ByteReader, len: number): void {
  const p = padLen(len)
  if (p === 0) return
  const pad = r.take(p)
  for (const byte of pad) if (byte !== 0) throw bad('non-zero padding')
}

/** A length-prefixed, padded string of at most `max` bytes, copied out. */
function readStr(r: ByteReader, max: number, what: string): Uint8Array {
  const n = readLen(r, max, what)
  const data = Uint8Array.from(r.take(n))
  readPadding(r, n)
  return data
}

function expect(r: ByteReader, token: Uint8Array, where: string): void {
  const n = readLen(r, 64, 'token')
  const got = r.take(n)
  if (compareBytes(got, token) !== 0) {
    throw bad(`expected ${JSON.stringify(Buffer.from(token).toString())} ${where}, got ${printableName(got)}`)
  }
  readPadding(r, n)
}

/**
 * Parses a whole NAR (and requires the input to end right after it). The
 * Directories being parsed are kept on an explicit stack, so nesting is
 * bounded only by the input (as in Nix), not by the call stack.
 */
export async function readNar<N>(r: ByteReader, v: NarVisitor<N>): Promise<N> {
  const magic = () => {
    try {
      expect(r, T.magic, 'at start (not a NAR)')
    } catch (e) {
      // A text file or a compressed NAR fails on the first length: say what it is not.
      throw e instanceof Error && /token (length too large|longer than)/.test(e.message) ? bad('not a NAR: it does not start with "nix-archive-1" (a compressed NAR must be decompressed first)') : e
    }
    return true
  }
  r.now(magic) ?? (await r.more(magic))
  /** Open Directories, innermost last: their entries so far and the name of the entry being parsed. */
  const open: Array<{ entries: Array<{ name: Uint8Array; node: N }>; name?: Uint8Array }> = []
  const nodeStart = () => readNodeStart(r)
  for (;;) {
    const started = r.now(nodeStart) ?? (await r.more(nodeStart))
    let node: N
    if (started.kind === 'directory') {
      const dir: (typeof open)[number] = { entries: [] }
      const first = () => nextEntry(r, dir)
      if (r.now(first) ?? (await r.more(first))) {
        open.push(dir)
        continue
      }
      node = await v.directory([])
    } else if (started.kind === 'symlink') {
      node = await v.symlink(started.target)
    } else {
      node = await readContents(r, v, started.executable, started.size)
    }
    // A node is complete: hand it to its Directory, and close every Directory that ends here.
    for (;;) {
      const top = open.at(-1)
      if (!top) {
        if (!(await r.atEnd())) throw bad('trailing data after the end of the archive')
        return node
      }
      const next = () => {
        expect(r, T.close, 'to close the entry')
        return nextEntry(r, top)
      }
      // The name this node was parsed under: nextEntry moves on to the next one's.
      const name = top.name!
      const more = r.now(next) ?? (await r.more(next))
      top.entries.push({ name, node })
      if (more) break
      open.pop()
      node = await v.directory(top.entries)
    }
  }
}

type NodeStart = { kind: 'regular'; executable: boolean; size: number } | { kind: 'symlink'; target: Uint8Array } | { kind: 'directory' }

/** `( type <type>` and, for a file, up to its size; for a symlink, all of it; a Directory only opens. */
function readNodeStart(r: ByteReader): NodeStart {
  expect(r, T.open, 'to open a node')
  expect(r, T.type, 'after "("')
  const type = readStr(r, 16, 'node type')
  switch (Buffer.from(type).toString('latin1')) {
    case 'regular':
      return readRegularStart(r)
    case 'symlink': {
      expect(r, T.target, 'in symlink')
      const target = readStr(r, MAX_TARGET_LEN, 'symlink target')
      const why = invalidTargetReason(target)
      if (why) throw bad(why)
      expect(r, T.close, 'after symlink target')
      return { kind: 'symlink', target }
    }
    case 'directory':
      return { kind: 'directory' }
    default:
      throw bad(`unknown node type ${printableName(type)}`)
  }
}

/**
 * Reads up to the node of a Directory's next entry (`entry ( name <name>
 * node`), checking the name and its order; false at the Directory's `)`.
 */
function nextEntry(r: ByteReader, dir: { entries: unknown[]; name?: Uint8Array }): boolean {
  const tok = readStr(r, 16, 'token')
  if (compareBytes(tok, T.close) === 0) return false
  if (compareBytes(tok, T.entry) !== 0) throw bad(`expected "entry" or ")", got ${printableName(tok)}`)
  expect(r, T.open, 'after "entry"')
  expect(r, T.name, 'in entry')
  const name = readStr(r, MAX_NAME_LEN, 'entry name')
  const why = invalidNameReason(name)
  if (why) throw bad(`invalid entry ${printableName(name)}: ${why}`)
  const prev = dir.name
  if (prev) {
    const c = compareBytes(prev, name)
    if (c === 0) throw bad(`duplicate entry ${printableName(name)}`)
    if (c > 0) throw bad(`entry ${printableName(name)} is out of order (after ${printableName(prev)})`)
  }
  expect(r, T.node, 'in entry')
  // Only now: a step must change nothing before its last read, as it is run again when the bytes run short.
  dir.name = name
  return true
}

function readRegularStart(r: ByteReader): NodeStart {
  let tok = readStr(r, 16, 'token')
  let executable = false
  if (compareBytes(tok, T.executable) === 0) {
    executable = true
    const marker = readStr(r, 16, 'executable marker')
    if (marker.length !== 0) throw bad('non-empty executable marker')
    tok = readStr(r, 16, 'token')
  }
  if (compareBytes(tok, T.contents) !== 0) throw bad(`expected "contents", got ${printableName(tok)}`)
  return { kind: 'regular', executable, size: readLen(r, MAX_FILE_SIZE, 'file') }
}

/** A file's contents, handed to the visitor as they stream, then its padding and `)`. */
async function readContents<N>(r: ByteReader, v: NarVisitor<N>, executable: boolean, size: number): Promise<N> {
  const body = r.stream(size)
  const node = await v.file(executable, size, body)
  // Whatever the visitor left unread must still be consumed (and hashed).
  for await (const _ of body);
  const end = () => {
    readPadding(r, size)
    expect(r, T.close, 'after file contents')
    return true
  }
  r.now(end) ?? (await r.more(end))
  return node
}
