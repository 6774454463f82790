import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import type { Writable } from 'node:stream'
import path from 'node:path'
import { BackendError, NoSpaceError, NotFoundError, StoreError, UsageError, isNoSpace, systemMessage } from '../errors.js'
import { onInterrupt } from '../util/interrupt.js'
import { writeAll } from './output.js'

type Chunks = AsyncIterable<Uint8Array> | Iterable<Uint8Array>

/**
 * Writes `chunks` to the file named by `-o FILE`. A new or regular file is
 * replaced atomically (a temp file beside it, renamed when complete), so
 * FILE never holds a partial result; a symlink to a regular file keeps
 * the link and replaces the file it points to. Anything else that exists
 * (/dev/null, /dev/stdout, a FIFO, a dangling symlink) is opened and written
 * through, as the shell's `>` does; a directory is refused. `lent`: see writeAll.
 */
export async function writeOutputFile(file: string, chunks: Chunks, opts: { lent?: boolean } = {}): Promise<void> {
  const target = outputTarget(file)
  if (target === undefined) return writeThrough(file, chunks, opts)
  return writeReplacing(target, file, chunks, opts)
}

/** The regular file to replace (symlinks resolved), or undefined to write through `file`. */
function outputTarget(file: string): string | undefined {
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw cannotWrite(file, e)
    // Absent: a new file. A dangling symlink: its target, created as `>` would.
    return fs.lstatSync(file, { throwIfNoEntry: false }) ? undefined : file
  }
  if (st.isDirectory()) throw new UsageError(`cannot write ${file}: it is a directory`)
  return st.isFile() ? fs.realpathSync(file) : undefined
}

/** Temp files of writes in progress, removed if the process is interrupted or stdout fails. */
const temps = new Set<string>()
onInterrupt(() => {
  for (const t of temps) fs.rmSync(t, { force: true })
})

async function writeReplacing(final: string, shown: string, chunks: Chunks, opts: { lent?: boolean }): Promise<void> {
  const tmp = `${final}.tmp-${randomBytes(6).toString('hex')}`
  let fd: number
  try {
    // Opened here, synchronously: a bad folder is one clear error, before any work is done.
    fd = fs.openSync(tmp, 'wx', 0o644)
  } catch (e) {
    throw cannotWrite(shown, e)
  }
  temps.add(tmp)
  const ws = fs.createWriteStream(tmp, { fd })
  try {
    await writeAll(ws, chunks, opts)
    await end(ws)
    fs.renameSync(tmp, final)
  } catch (e) {
    await closed(ws)
    fs.rmSync(tmp, { force: true })
    throw cannotWrite(shown, e)
  } finally {
    temps.delete(tmp)
  }
}

async function writeThrough(file: string, chunks: Chunks, opts: { lent?: boolean }): Promise<void> {
  let fh: fs.promises.FileHandle
  try {
    // Asynchronous: opening a FIFO waits for its reader.
    fh = await fs.promises.open(file, 'w')
  } catch (e) {
    throw cannotWrite(file, e)
  }
  const ws = fh.createWriteStream()
  try {
    await writeAll(ws, chunks, opts)
    await end(ws)
  } catch (e) {
    await closed(ws)
    throw cannotWrite(file, e)
  }
}

/** Destroys the stream and waits until its file is closed (a failed stream may be closed already). */
async function closed(ws: Writable): Promise<void> {
  if (ws.closed) return
  await new Promise<void>((resolve) => ws.destroy().once('close', () => resolve()))
}

function end(ws: Writable): Promise<void> {
  return new Promise<void>((resolve, reject) => ws.end((e?: Error | null) => (e ? reject(e) : resolve())))
}

/** A system error while writing `file` as one clear line; our own errors (a corrupt store) pass unchanged. */
function cannotWrite(file: string, e: unknown): unknown {
  if (e instanceof StoreError || typeof (e as NodeJS.ErrnoException)?.code !== 'string') return e
  const err = e as NodeJS.ErrnoException
  if (isNoSpace(err)) return new NoSpaceError(`no space left on device while writing ${file}`, { cause: e })
  if (err.code === 'ENOENT') return new NotFoundError(`cannot write ${file}: its folder ${path.dirname(file)} does not exist`, { cause: e })
  return new BackendError(`cannot write ${file}: ${systemMessage(err)}`, { cause: e })
}
