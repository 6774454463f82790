import fs from 'node:fs'
import path from 'node:path'
import { BackendError, InvalidInputError } from '../../errors.js'
import type { CallOptions } from '../../util/call-options.js'
import type { CacheFile, CacheTransport } from './transport.js'

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
    return { body: handle.createReadStream({ signal: opts.signal, highWaterMark: 1 << 20 }), size }
  }

  async close(): Promise<void> {}
}
