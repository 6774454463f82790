import { type B3Digest, toHex } from '../../castore/digest.js'
import { type Directory, directoryDigest } from '../../castore/directory.js'
import { bufferedStage, type DirectoryService, type DirectoryStage } from '../../castore/directory-service.js'
import { type Castore, CastoreTransfer } from '../../castore/transfer.js'

/**
 * Directories from `near` when it has them, else from `far`, whose
 * closure is then copied to `near` (a Directory is stored only with its
 * children). Writes go to `far`, then to `near`.
 */
export class CacheDirectoryService implements DirectoryService {
  constructor(
    private readonly near: Castore,
    private readonly far: Castore,
  ) {}

  async get(d: B3Digest): Promise<Directory | undefined> {
    const here = await this.near.directories.get(d)
    if (here) return here
    const there = await this.far.directories.get(d)
    if (there) await new CastoreTransfer(this.far, this.near).directories(d)
    return there
  }

  async *getClosure(root: B3Digest): AsyncIterable<Directory> {
    if (!(await this.near.directories.get(root))) {
      if (!(await this.far.directories.get(root))) return
      await new CastoreTransfer(this.far, this.near).directories(root)
    }
    yield* this.near.directories.getClosure(root)
  }

  /** A closure is a tree's metadata, not its file data: held here, as copy holds one, to go to both sides. */
  async putClosure(dirs: Iterable<Directory> | AsyncIterable<Directory>): Promise<B3Digest> {
    const all: Directory[] = []
    for await (const d of dirs) all.push(d)
    const root = await this.far.directories.putClosure(all)
    // Children the closure names without sending (the far store had them) must be in the near store first.
    const sent = new Set(all.map((d) => toHex(directoryDigest(d))))
    const fill = new CastoreTransfer(this.far, this.near)
    for (const d of all) {
      for (const child of d.directories) {
        const key = toHex(child.digest)
        if (sent.has(key)) continue
        sent.add(key)
        if (!(await this.near.directories.get(child.digest))) await fill.directories(child.digest)
      }
    }
    await this.near.directories.putClosure(all)
    return root
  }

  stage(): DirectoryStage {
    return bufferedStage(this)
  }
}
