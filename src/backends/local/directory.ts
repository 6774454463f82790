import type { BlobService } from '../../castore/blob-service.js'
import { type B3Digest, b3Display, b3Matches, binaryKey, requireDigestLength, toHex } from '../../castore/digest.js'
import { type Directory, validateDirectory } from '../../castore/directory.js'
import { ClosureValidator, type DirectoryService, type DirectoryStage, walkClosure } from '../../castore/directory-service.js'
import { IntegrityError } from '../../errors.js'
import { decodeDirectory } from '../../castore/proto.js'
import fsSync from 'node:fs'
import { callerInput } from './io-errors.js'
import { type LocalRoot, readSmallFile } from './layout.js'
import type { WriteSession } from './locks.js'
import type { CallOptions } from '../../util/call-options.js'

export class LocalDirectoryService implements DirectoryService {
  /** With `blobs`, file sizes are checked against the blobs stored. `session`: the write session this view reads and writes for, if any. */
  constructor(
    private readonly root: LocalRoot,
    private readonly blobs?: Pick<BlobService, 'size'>,
    private readonly session?: WriteSession,
  ) {}

  private path(d: B3Digest): string {
    return this.root.objectPath('dirs', toHex(d))
  }

  async get(d: B3Digest): Promise<Directory | undefined> {
    return this.getNow(d)
  }

  async getEncoded(d: B3Digest): Promise<Uint8Array | undefined> {
    return this.encodedNow(d)
  }

  /** The stored bytes, hashed as read: they are canonical, so that is the check. */
  private encodedNow(d: B3Digest): Uint8Array | undefined {
    const file = this.path(requireDigestLength(d))
    const bytes = readSmallFile(file)
    if (!bytes) return undefined
    this.session?.rely(file)
    if (!b3Matches(bytes, d)) throw new IntegrityError(`directory ${b3Display(d)} is corrupt: its bytes do not match its digest`)
    return bytes
  }

  /** get() without a promise: a renderer's walk over a tree of many Directories awaits none of them. */
  getNow(d: B3Digest): Directory | undefined {
    const bytes = this.encodedNow(d)
    if (!bytes) return undefined
    const dir = decodeDirectory(bytes)
    validateDirectory(dir)
    return dir
  }

  getClosure(root: B3Digest, opts?: CallOptions): AsyncIterable<Directory> {
    return walkClosure(root, (d) => this.get(d), opts?.signal)
  }

  /**
   * Validates the closure as it comes and stages the Directories the store
   * lacks: temp files made durable together (one syncfs for many, not an
   * fsync each) and renamed into place leaves first, so a crash never
   * leaves a parent whose children are missing.
   */
  async putClosure(dirs: Iterable<Directory> | AsyncIterable<Directory>): Promise<B3Digest> {
    await this.root.init()
    const v = new ClosureValidator((d) => this.get(d), this.blobs?.size && ((d) => this.blobs!.size!(d)))
    const stage = this.stage()
    try {
      for await (const dir of callerInput(dirs)) {
        const { digest, bytes, fresh } = await v.accept(dir)
        if (fresh) await stage.put(digest, bytes)
      }
      const rootDigest = v.finish()
      await stage.commit()
      return rootDigest
    } catch (e) {
      await stage.abort()
      throw e
    }
  }

  /**
   * Directories spilled to temp files as they come (memory per Directory:
   * its digest and temp name), renamed into place leaves first at commit.
   * One stored already is relied on (kept from a sweep until the session
   * ends), one staged already is not written again.
   */
  stage(): DirectoryStage {
    let staged: Array<{ digest: B3Digest; tmp: string }> = []
    let seen = new Set<string>()
    /** How many of `staged` (the first ones) prepare() made durable already. */
    let synced = 0
    return {
      prepare: async () => {
        const list = staged
        const upTo = list.length
        await this.root.syncFiles(list.slice(synced, upTo).map((s) => s.tmp))
        // Unless a commit or abort took the list meanwhile (then it synced or dropped them itself).
        if (staged === list) synced = upTo
      },
      put: async (digest, bytes) => {
        await this.root.init()
        const key = binaryKey(digest)
        if (seen.has(key)) return
        seen.add(key)
        // Synchronous, as Directories are read: a lookup and a small write are microseconds, a promise each a thread-pool round trip.
        const p = this.path(digest)
        if (fsSync.existsSync(p)) {
          this.session?.rely(p)
          return
        }
        const tmp = this.root.tempPath()
        staged.push({ digest, tmp })
        fsSync.writeFileSync(tmp, bytes, { flag: 'wx', mode: 0o444 })
      },
      commit: async () => {
        const all = staged
        const done = synced
        staged = []
        seen = new Set()
        synced = 0
        try {
          await this.root.syncFiles(all.slice(done).map((s) => s.tmp))
          await this.root.commit(this.session, async () => {
            for (const { digest, tmp } of all) {
              const p = this.path(digest)
              if (fsSync.existsSync(p)) {
                this.session?.rely(p)
                await this.root.discard(tmp)
              } else await this.root.publish(tmp, p, this.session)
            }
            await this.root.sync()
          })
        } catch (e) {
          // What was not renamed into place (a conflict with gc, a full disk) goes.
          for (const { tmp } of all) await this.root.discard(tmp)
          throw e
        }
      },
      abort: async () => {
        const all = staged
        staged = []
        seen = new Set()
        synced = 0
        for (const { tmp } of all) await this.root.discard(tmp)
      },
    }
  }
}
