import fsSync from 'node:fs'
import path from 'node:path'
import { IntegrityError } from '../../errors.js'
import { b3, b3Display, b3Hasher, bytesEqual, toHex } from '../../castore/digest.js'
import { directorySize, validateDirectory } from '../../castore/directory.js'
import { wrongFileSize } from '../../castore/directory-service.js'
import type { FileNode, Node } from '../../castore/node.js'
import { decodeDirectory } from '../../castore/proto.js'
import { decodePathInfo } from '../../store/proto.js'
import { calculateNar } from '../../store/nar/render.js'
import { DEFAULT_MAX_NAR_SIZE, NarSizeMemo, NarTooLargeError, narSize } from '../../store/nar/size.js'
import * as nixbase32 from '../../store/nixbase32.js'
import { type PathInfo, validatePathInfo } from '../../store/path-info.js'
import { type StorePath, hashPart } from '../../store/store-path.js'
import type { LocalStoreParts } from './parts.js'
import type { Problem, VerifyOptions, VerifyReport } from '../../store/capabilities.js'
import { type ObjectKind, type StoredObject, listObjects, objectKey } from './inventory.js'
import { storeFailure } from './io-errors.js'
import { readSmallFile } from './layout.js'
import { borrowedPacks, readStoredDirectory } from './object-graph.js'
import { ChunkReader, readManifest } from './pack.js'
import { MemberReader, readBundleIndex, rewriteBundle } from './bundle.js'
import { secondsSince } from '../../util/elapsed.js'

export type { Problem, VerifyOptions, VerifyReport } from '../../store/capabilities.js'

/**
 * Checks a local store: every blob re-hashed (a pack chunk by chunk and
 * as a whole), every Directory re-hashed, decoded and validated, with its
 * child Directories present, every PathInfo decoded, validated, filed
 * under its own hash and with a complete, intact tree; with `narHash`,
 * every NAR re-rendered against its recorded hash and size. A bundle's
 * index is checked against its digest and each member re-hashed.
 *
 * Repair runs with writers held off, as gc does, and removes objects
 * outright, leaving the store as a crash-free history could have: a
 * Directory whose child was removed goes too, as does a pack whose chunks
 * were in a removed pack, and every PathInfo whose tree is no longer
 * complete. A corrupt bundle member is removed by rewriting its bundle
 * without it (a bundle whose index is damaged goes whole). A later import of the same content writes them again.
 */
export async function verifyStore(store: LocalStoreParts, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const started = performance.now()
  const run = async () => {
    // A chunk in another process's pack must not look like a missing blob (repair would remove its paths).
    store.objects.refresh()
    const v = new Verifier(store)
    const report = await v.run(opts)
    report.seconds = secondsSince(started)
    return report
  }
  try {
    return await (opts.repair ? store.root.locks.exclusive(run) : run())
  } catch (e) {
    throw storeFailure(e, store.root.dir)
  }
}

class Verifier {
  private readonly problems: Problem[] = []
  /** Keys (objectKey) of objects found corrupt or unreadable. */
  private readonly bad = new Set<string>()
  private readonly checked = { blobs: 0, packs: 0, directories: 0, paths: 0 }
  private readBuf: Buffer | undefined
  private readonly skipped: string[] = []
  /** NAR sizes per Directory, shared by the paths checked (trees share Directories). */
  private readonly narSizes = new NarSizeMemo()
  /** Referrers index entries found missing: [referenced hash part, referrer hash part, line to print when added]. */
  private readonly unindexed: Array<[string, string, string]> = []
  /** Corrupt bundle members: hex digests, per bundle name. */
  private readonly badMembers = new Map<string, Set<string>>()
  /** With store paths: the bundle members their trees use (the only ones checked); undefined: all. */
  private members: Set<string> | undefined

  constructor(private readonly store: LocalStoreParts) {}

  private problem(message: string, key?: string): void {
    this.problems.push({ message })
    if (key) this.bad.add(key)
  }

  async run(opts: VerifyOptions): Promise<VerifyReport> {
    const all = listObjects(this.store.root)
    const targets = opts.paths ? this.objectsOfPaths(opts.paths, all) : [...all.values()]
    const order: ObjectKind[] = ['blob', 'pack', 'bundle', 'dir', 'pathinfo']
    targets.sort((a, b) => order.indexOf(a.kind) - order.indexOf(b.kind))
    let done = 0
    for (const o of targets) {
      await this.check(o, opts)
      opts.onProgress?.(++done, targets.length)
    }
    // A damaged catalog loses nothing (lookups read each bundle index or pack manifest instead), but it is damage on disk.
    const catalogs = opts.paths ? [] : this.store.objects.catalogDamage()
    for (const m of catalogs) this.problem(m)
    const removed = opts.repair ? await this.repair(all) : []
    const added = opts.repair ? await this.reindex() : []
    if (opts.repair && catalogs.length > 0) {
      await this.store.objects.rewriteCatalogs(true)
      added.push('wrote the catalogs again from the bundles and packs there are')
    }
    return { checked: this.checked, problems: this.problems, removed, added, skipped: this.skipped, seconds: 0 }
  }

  /** The PathInfos named and every object their trees use (missing ones are reported when the PathInfo is checked). */
  private objectsOfPaths(paths: StorePath[], all: Map<string, StoredObject>): StoredObject[] {
    const out = new Map<string, StoredObject>()
    this.members = new Set()
    const add = (kind: ObjectKind, name: string) => {
      const o = all.get(objectKey(kind, name))
      if (o) out.set(objectKey(kind, name), o)
      return o
    }
    for (const p of paths) {
      if (!add('pathinfo', hashPart(p))) {
        this.problem(`path '${this.store.storeDir}/${hashPart(p)}-${p.name}' is not in the store`)
        continue
      }
      const info = this.readPathInfo(all.get(objectKey('pathinfo', hashPart(p)))!)
      if (!info) continue
      const tree = this.treeOf(info.node)
      for (const b of tree.blobs) this.addBlobObjects(b, add)
      for (const d of tree.dirs) add('dir', d)
    }
    return [...out.values()]
  }

  private addBlobObjects(hex: string, add: (kind: ObjectKind, name: string) => StoredObject | undefined): void {
    if (add('blob', hex)) return
    const pack = add('pack', hex)
    if (!pack) {
      const at = this.store.objects.locate(hex, true)
      if (at?.kind === 'member' && add('bundle', at.bundle)) this.members!.add(hex)
      return
    }
    for (const other of borrowedPacks(pack.file, hex)) add('pack', other)
  }

  private async check(o: StoredObject, opts: VerifyOptions): Promise<void> {
    const key = objectKey(o.kind, o.name)
    try {
      if (o.kind === 'blob') this.checkBlob(o)
      else if (o.kind === 'pack') this.checkPack(o)
      else if (o.kind === 'bundle') this.checkBundle(o)
      else if (o.kind === 'dir') await this.checkDir(o)
      else await this.checkPathInfo(o, opts)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return // removed meanwhile (gc)
      this.problem(`${describe(o)}: ${(e as Error).message}`, key)
    }
  }

  private checkBlob(o: StoredObject): void {
    this.checked.blobs++
    const h = b3Hasher()
    const fd = fsSync.openSync(o.file, 'r')
    try {
      const buf = (this.readBuf ??= Buffer.allocUnsafe(1 << 20))
      for (let n; (n = fsSync.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n))
    } finally {
      fsSync.closeSync(fd)
    }
    if (toHex(h.digest()) !== o.name) this.problem(`${describe(o)} is corrupt: its bytes do not match its digest`, objectKey(o.kind, o.name))
  }

  /** Each chunk against its own digest, the whole against the blob's; the packs it borrows chunks from must be there. */
  private checkPack(o: StoredObject): void {
    this.checked.packs++
    const manifest = readManifest(o.file, o.name)!
    const reader = new ChunkReader((hex) => this.store.root.packPath(hex), true)
    const h = b3Hasher()
    try {
      for (const c of manifest) {
        if (c.pack !== o.name && !fsSync.existsSync(this.store.root.packPath(c.pack))) {
          this.problem(`${describe(o)} uses chunks of pack ${hexDisplay(c.pack)}, which is missing`, objectKey(o.kind, o.name))
          return
        }
        h.update(reader.read(c))
      }
    } finally {
      reader.close()
    }
    if (toHex(h.digest()) !== o.name) this.problem(`${describe(o)} is corrupt: its chunks do not add up to its digest`, objectKey(o.kind, o.name))
  }

  /** The index against its digest, then each member (those of the paths asked for) against its own. */
  private checkBundle(o: StoredObject): void {
    const index = readBundleIndex(o.file, o.name)
    if (!index) return
    const reader = new MemberReader(1)
    try {
      for (const m of index.members()) {
        if (this.members && !this.members.has(m.hex)) continue
        this.checked.blobs++
        let data: Uint8Array | undefined
        try {
          data = reader.read(o.file, m)
        } catch (e) {
          if (!(e instanceof IntegrityError)) throw e
        }
        if (data && toHex(b3(data)) === m.hex) continue
        this.problem(`blob ${hexDisplay(m.hex)} (in ${describe(o)}) is corrupt: its bytes do not match its digest`)
        let set = this.badMembers.get(o.name)
        if (!set) this.badMembers.set(o.name, (set = new Set()))
        set.add(m.hex)
      }
    } finally {
      reader.close()
    }
  }

  private isBadBlob(hex: string): boolean {
    if (this.bad.has(objectKey('blob', hex)) || this.bad.has(objectKey('pack', hex))) return true
    for (const set of this.badMembers.values()) if (set.has(hex)) return true
    return false
  }

  private async checkDir(o: StoredObject): Promise<void> {
    this.checked.directories++
    const bytes = fsSync.readFileSync(o.file)
    if (toHex(b3(bytes)) !== o.name) return this.problem(`${describe(o)} is corrupt: its bytes do not match its digest`, objectKey(o.kind, o.name))
    const dir = decodeDirectory(bytes)
    validateDirectory(dir)
    for (const c of dir.directories) {
      if (!fsSync.existsSync(this.store.root.objectPath('dirs', toHex(c.digest)))) {
        this.problem(`${describe(o)} refers to directory ${b3Display(c.digest)}, which is missing`, objectKey(o.kind, o.name))
      }
    }
    for (const f of dir.files) {
      const why = await this.wrongSize(f)
      if (why) return this.problem(`${describe(o)} lies: ${why}`, objectKey(o.kind, o.name))
    }
  }

  /** Why a file node's size does not match its stored blob; undefined if it does, or the blob is absent or itself corrupt (reported on its own). */
  private async wrongSize(f: FileNode): Promise<string | undefined> {
    const hex = toHex(f.digest)
    if (this.isBadBlob(hex)) return undefined
    const size = await this.store.blobs.size(f.digest).catch(() => undefined)
    return size === undefined ? undefined : wrongFileSize(f, size)
  }

  private readPathInfo(o: StoredObject): PathInfo | undefined {
    try {
      return decodePathInfo(readSmallFile(o.file) ?? Buffer.alloc(0))
    } catch {
      return undefined
    }
  }

  private async checkPathInfo(o: StoredObject, opts: VerifyOptions): Promise<void> {
    this.checked.paths++
    const info = decodePathInfo(fsSync.readFileSync(o.file))
    const sp = validatePathInfo(info)
    const shown = `path '${this.store.storeDir}/${Buffer.from(info.node.name).toString('utf8')}'`
    if (hashPart(sp) !== o.name) return this.problem(`${shown} is filed under the wrong hash (${o.name})`, objectKey(o.kind, o.name))
    this.checkIndexed(info, o.name, shown)
    const tree = this.treeOf(info.node)
    if (tree.missing) return this.problem(`${shown} cannot be served: ${tree.missing} is missing`)
    const broken = [...tree.blobs].find((b) => this.isBadBlob(b))
    const brokenDir = [...tree.dirs].find((d) => this.bad.has(objectKey('dir', d)))
    if (broken || brokenDir) return this.problem(`${shown} cannot be served: ${broken ? `blob ${hexDisplay(broken)}` : `directory ${hexDisplay(brokenDir!)}`} is corrupt`)
    const lie = info.node.kind === 'file' ? await this.wrongSize(info.node) : await this.wrongDirectorySize(info.node)
    if (lie) return this.problem(`${shown} lies: root ${lie}`, objectKey(o.kind, o.name))
    if (opts.narHash && info.narinfo) {
      const maxNarSize = opts.maxNarSize ?? DEFAULT_MAX_NAR_SIZE
      // The size first, cheaply: a tree too large to hash within the limit is skipped, not rendered.
      const size = await narSize(info.node, this.store, { memo: this.narSizes })
      if (size > maxNarSize) {
        if (size !== info.narinfo.narSize) return this.problem(`${shown} has NAR size ${size}, but ${info.narinfo.narSize} is recorded`)
        this.skipped.push(`${shown}: NAR hash not checked: ${new NarTooLargeError(size, maxNarSize).message} (--max-nar-size)`)
        return
      }
      const nar = await calculateNar(info.node, this.store)
      if (nar.narSize !== info.narinfo.narSize || !bytesEqual(nar.narSha256, info.narinfo.narSha256)) {
        this.problem(
          `${shown} has NAR hash sha256:${nixbase32.encode(nar.narSha256)} and size ${nar.narSize}, ` +
            `but sha256:${nixbase32.encode(info.narinfo.narSha256)} and ${info.narinfo.narSize} are recorded`,
        )
      }
    }
  }

  /** Each reference has this path's entry in the referrers index (a store from before the index has none to check). */
  private checkIndexed(info: PathInfo, name: string, shown: string): void {
    const index = this.store.pathInfos.index
    if (!this.store.root.indexed) return
    info.references.forEach((r, i) => {
      const referenced = nixbase32.encode(r)
      if (index.has(referenced, name)) return
      const of = `'${this.store.storeDir}/${info.narinfo?.referenceNames[i] ?? referenced}'`
      this.problem(`${shown} is missing from the referrers index of ${of}`)
      this.unindexed.push([referenced, name, `added ${shown} to the referrers index of ${of}`])
    })
  }

  /** Adds the missing referrers index entries of the PathInfos repair left in place. */
  private async reindex(): Promise<string[]> {
    const added: string[] = []
    for (const [referenced, referrer, line] of this.unindexed) {
      if (!fsSync.existsSync(this.store.root.pathInfoPath(referrer))) continue
      this.store.pathInfos.index.add(nixbase32.decode(referrer), [nixbase32.decode(referenced)])
      added.push(line)
    }
    await this.store.root.sync()
    return added
  }

  private async wrongDirectorySize(node: Node): Promise<string | undefined> {
    if (node.kind !== 'directory') return undefined
    const dir = this.store.objects.directory(toHex(node.digest))
    if (!dir || directorySize(dir) === node.size) return undefined
    return `directory claims size ${node.size}, but directory ${b3Display(node.digest)} has ${directorySize(dir)}`
  }

  /** Directories and blobs (hex) of a tree, read without re-hashing; the first missing object, described. */
  private treeOf(node: Node): { dirs: Set<string>; blobs: Set<string>; missing?: string } {
    const dirs = new Set<string>()
    const blobs = new Set<string>()
    let missing: string | undefined
    const blob = (hex: string) => {
      if (blobs.has(hex)) return
      blobs.add(hex)
      if (!missing && !this.store.objects.locate(hex)) missing = `blob ${hexDisplay(hex)}`
    }
    if (node.kind === 'file') blob(toHex(node.digest))
    // A corrupt Directory has no children here: it is reported as a directory problem.
    if (node.kind === 'directory') this.store.objects.walk([toHex(node.digest)], dirs, { blob, missing: (hex) => (missing ??= `directory ${hexDisplay(hex)}`) })
    return { dirs, blobs, missing }
  }

  /**
   * Removes bad objects, then whatever can no longer be read because of
   * them (packs borrowing from a removed pack, Directories with a removed
   * child), then PathInfos whose tree is incomplete. Who needs what is
   * read once and removals follow it backwards, so the cost is linear in
   * the store however deep its trees are.
   */
  private async repair(all: Map<string, StoredObject>): Promise<string[]> {
    const removed: string[] = []
    /** Keys of removed objects whose dependants are still to be looked at. */
    const gone: string[] = []
    const remove = (o: StoredObject, why: string) => {
      const key = objectKey(o.kind, o.name)
      if (!all.has(key)) return
      if (this.store.root.remove(o.file)) removed.push(`removed ${describe(o)} (${why})`)
      all.delete(key)
      gone.push(key)
    }
    const lostWhy = (o: StoredObject, name: string) =>
      o.kind === 'pack' ? `its chunks in pack ${hexDisplay(name)} are gone` : `its child directory ${hexDisplay(name)} is gone`
    for (const key of this.bad) {
      const o = all.get(key)
      if (o) remove(o, 'corrupt')
    }
    for (const [name, corrupt] of this.badMembers) {
      const o = all.get(objectKey('bundle', name))
      const index = o && readBundleIndex(o.file, name)
      if (!o || !index) continue
      const copied = await rewriteBundle(this.store.root, index, (hex) => !corrupt.has(hex), 'drop')
      if (!copied) continue
      this.store.root.remove(o.file)
      all.delete(objectKey('bundle', name))
      for (const hex of new Set([...corrupt, ...copied.dropped])) removed.push(`removed blob ${hexDisplay(hex)} from ${describe(o)} (corrupt)`)
    }
    // Reads below (which blobs a tree misses) must see the bundles as they are now.
    if (this.badMembers.size > 0) this.store.objects.refresh()
    /** Per object key: the objects that cannot be read without it. */
    const dependants = new Map<string, Array<{ o: StoredObject; name: string }>>()
    for (const o of [...all.values()]) {
      if (!all.has(objectKey(o.kind, o.name))) continue
      const kind = o.kind === 'pack' ? 'pack' : o.kind === 'dir' ? 'dir' : undefined
      if (!kind) continue
      const needs = kind === 'pack' ? borrowedPacks(o.file, o.name) : (readStoredDirectory(o.file)?.directories ?? []).map((c) => toHex(c.digest))
      for (const name of needs) {
        const key = objectKey(kind, name)
        if (!all.has(key)) {
          remove(o, lostWhy(o, name))
          break
        }
        let list = dependants.get(key)
        if (!list) dependants.set(key, (list = []))
        list.push({ o, name })
      }
    }
    while (gone.length > 0) {
      for (const { o, name } of dependants.get(gone.pop()!) ?? []) remove(o, lostWhy(o, name))
    }
    for (const o of [...all.values()]) {
      if (o.kind !== 'pathinfo') continue
      const info = this.readPathInfo(o)
      if (!info) {
        remove(o, 'undecodable')
        continue
      }
      const missing = this.treeOf(info.node).missing
      if (missing) {
        const shown = `path '${this.store.storeDir}/${Buffer.from(info.node.name).toString('utf8')}'`
        if (this.store.root.remove(o.file)) removed.push(`removed ${shown} (${missing} is gone)`)
        all.delete(objectKey(o.kind, o.name))
      }
    }
    await this.store.root.sync()
    if (removed.length > 0) this.store.root.locks.bumpEpoch()
    return removed
  }
}

const hexDisplay = (hex: string) => b3Display(Buffer.from(hex, 'hex'))

function describe(o: StoredObject): string {
  switch (o.kind) {
    case 'blob':
      return `blob ${hexDisplay(o.name)}`
    case 'pack':
      return `blob ${hexDisplay(o.name)} (pack)`
    case 'bundle':
      return `bundle ${o.name}`
    case 'dir':
      return `directory ${hexDisplay(o.name)}`
    case 'pathinfo':
      return `PathInfo ${path.basename(o.file)}`
  }
}
