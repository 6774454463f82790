import fsSync from 'node:fs'
import { NotFoundError } from '../../errors.js'
import { type GcRoot, type GcRootSet, ROOT_NAME, validateRootName } from '../../store/capabilities.js'
import { type StorePath, absolute, parseBasename } from '../../store/store-path.js'
import type { LocalRoot } from './layout.js'
import type { WriteSession } from './locks.js'

export { validateRootName, type GcRoot }

/**
 * Named GC roots, one file each under `roots/`, holding the absolute
 * store path it keeps alive (with its whole closure). Written atomically;
 * adding a root under an existing name repoints it, as `ln -sfn` would.
 */
export class GcRoots implements GcRootSet {
  /** `session`: the write session roots are added in, if any (the path a root names was looked up there). */
  constructor(
    private readonly root: LocalRoot,
    private readonly storeDir: string,
    private readonly session?: WriteSession,
  ) {}

  async add(name: string, storePath: StorePath): Promise<void> {
    validateRootName(name)
    await this.root.init()
    // The path it roots was looked up in this session: a sweep that took it since fails the commit.
    await this.root.commit(this.session, async () => {
      await this.root.writeAtomic(this.root.rootPath(name), Buffer.from(absolute(storePath, this.storeDir) + '\n'), this.session)
      await this.root.sync()
    })
  }

  link(name: string): string {
    return this.root.rootPath(name)
  }

  async remove(name: string): Promise<void> {
    validateRootName(name)
    try {
      fsSync.unlinkSync(this.root.rootPath(name))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`no GC root named ${JSON.stringify(name)}`)
      throw e
    }
  }

  list(): GcRoot[] {
    let names: string[]
    try {
      names = fsSync.readdirSync(this.root.rootsDir)
    } catch {
      return []
    }
    const out: GcRoot[] = []
    for (const name of names.filter((n) => ROOT_NAME.test(n)).sort()) {
      let text: string
      try {
        text = fsSync.readFileSync(this.root.rootPath(name), 'utf8').trim()
      } catch {
        continue // removed since the listing
      }
      try {
        out.push({ name, path: parseBasename(text.slice(text.lastIndexOf('/') + 1)) })
      } catch {
        out.push({ name })
      }
    }
    return out
  }
}
