import fs from 'node:fs'
import path from 'node:path'
import { BackendError, InvalidInputError } from '../../errors.js'
import { BufferPool } from '../../util/buffer-pool.js'
import type { CallOptions } from '../../util/call-options.js'
import type { CacheFile, CacheTransport } from './transport.js'

const READ_CHUNK = 1 << 20
/** Read buffers kept from one NAR to the next (two take turns per file). */
const readBuffers = new BufferPool(READ_CHUNK, 2)

/** The files of a cache folder (`nix+file:///dir`), as Nix's file:// store writes them. */
export class FileTransport implements CacheTransport {
  constructor(readonly dir: string) {}

  async open(rel: string, opts: CallOptions = {}): Promise<CacheFile | undefined> {
    const file = path.join(this.dir, rel)
    // A narinfo's URL names a file of the cache, never one beside it.
    if (/^[a-z][a-z0-9+.-]*:/i.test(rel) || path.isAbsolute(rel) || !file.startsWith(this.dir.replace(/\/?$/, '/'))) {
      throw new InvalidInputError(`${JSON.stringify(rel)} is not a file of binary cache 'nix+file://${this.dir}'`)
    }
    let handle: fs.promises.FileHandle
    try {
      handle = await fs.promises.open(file, 'r')
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
      throw new BackendError(`cannot read ${file}: ${(e as Error).message}`, { cause: e })
    }
    const { size } = await handle.stat()
    // The stream reads nothing until it is read: `reusing` may read the handle instead (destroying the stream closes it).
    return { body: handle.createReadStream({ signal: opts.signal, highWaterMark: READ_CHUNK }), size, reusing: () => readReusing(handle, opts.signal) }
  }

  async close(): Promise<void> {}
}

/**
 * A file's bytes in two pooled buffers that take turns (the one handed on
 * is free again once the next is asked for); the next read is issued
 * before a piece is handed on, so reading overlaps with ingesting.
 */
async function* readReusing(handle: fs.promises.FileHandle, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const turns = [readBuffers.take(), readBuffers.take()]
  let reads = 0
  let pos = 0
  const read = async () => {
    signal?.throwIfAborted()
    const buf = turns[reads++ % 2]!
    const { bytesRead } = await handle.read(buf, 0, READ_CHUNK, pos)
    pos += bytesRead
    return buf.subarray(0, bytesRead)
  }
  let next: Promise<Buffer> | undefined = read()
  try {
    for (;;) {
      const piece = await next
      next = undefined
      if (piece.length === 0) return
      next = read()
      yield piece
    }
  } finally {
    await next?.catch(() => {})
    for (const b of turns) readBuffers.give(b)
  }
}
