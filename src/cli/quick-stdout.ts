import { EventEmitter } from 'node:events'
import fs from 'node:fs'

/** What a pipe holds: output up to this size is written synchronously, without Node's stream (see installQuickStdout). */
const SYNC_LIMIT = 64 * 1024
/** Linux's memory devices (/dev/null, /dev/full, /dev/zero): writes never block. */
const MEMORY_DEVICES = 1

/**
 * Makes `process.stdout` a small writer that writes with fs.writeSync(1)
 * while the output is short, for the hot commands (src/cli/fast-path.ts):
 * Node's own stdout loads its stream modules (~10 ms of a start-up of
 * ~120). Only on a pipe, socket, regular file or memory device, where a
 * write of up to SYNC_LIMIT bytes cannot wait on anyone for long; a
 * terminal, a closed fd 1, or anything else keeps Node's stdout. Once the
 * output grows past SYNC_LIMIT (or a non-blocking pipe would block), the
 * rest goes through Node's stdout, after what was already written, so a
 * large output keeps its backpressure and a signal is not held up behind
 * a blocked write. A failed write is reported as a stream reports it:
 * `errored` set, the callback, then 'error' (StoreCommand turns EPIPE into
 * a quiet exit, anything else into one error line).
 */
export function installQuickStdout(): void {
  const own = Object.getOwnPropertyDescriptor(process, 'stdout')
  if (!own?.get || !own.configurable || !quickKind()) return
  const nodeStdout = own.get.bind(process) as () => NodeJS.WriteStream
  const quick = new QuickStdout(nodeStdout)
  Object.defineProperty(process, 'stdout', { ...own, get: () => quick })
}

function quickKind(): boolean {
  let st: fs.Stats
  try {
    st = fs.fstatSync(1)
  } catch {
    return false
  }
  if (st.isFIFO() || st.isSocket() || st.isFile()) return true
  return process.platform === 'linux' && st.isCharacterDevice() && ((st.rdev >> 8) & 0xfff) === MEMORY_DEVICES
}

type Callback = (err?: Error | null) => void

class QuickStdout extends EventEmitter {
  private written = 0
  private failed: Error | null = null
  private node: NodeJS.WriteStream | undefined

  constructor(private readonly nodeStdout: () => NodeJS.WriteStream) {
    super()
  }

  get errored(): Error | null {
    return this.node ? this.node.errored : this.failed
  }

  get writable(): boolean {
    return this.node ? this.node.writable : this.failed === null
  }

  write(chunk: string | Uint8Array, encoding?: BufferEncoding | Callback, cb?: Callback): boolean {
    if (typeof encoding === 'function') [cb, encoding] = [encoding, undefined]
    if (this.node) return this.node.write(chunk, encoding ?? 'utf8', cb)
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, encoding ?? 'utf8') : chunk
    if (this.failed) return this.fail(this.failed, cb, false)
    if (this.written + bytes.length > SYNC_LIMIT) return this.handOver(bytes, cb)
    let off = 0
    try {
      while (off < bytes.length) off += fs.writeSync(1, bytes, off, bytes.length - off)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return this.handOver(bytes.subarray(off), cb)
      return this.fail(e as Error, cb, true)
    }
    this.written += bytes.length
    if (cb) process.nextTick(cb, null)
    return true
  }

  /** The rest of the output through Node's stdout; its 'drain' and 'error' are this writer's. */
  private handOver(rest: Uint8Array, cb?: Callback): boolean {
    const node = this.nodeStdout()
    node.on('drain', () => this.emit('drain'))
    node.on('error', (e) => this.emit('error', e))
    this.node = node
    return node.write(rest, cb)
  }

  private fail(e: Error, cb: Callback | undefined, first: boolean): boolean {
    this.failed = e
    process.nextTick(() => {
      cb?.(e)
      if (first) this.emit('error', e)
    })
    return false
  }
}
