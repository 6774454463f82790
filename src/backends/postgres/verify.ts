import type { BlobService } from '../../castore/blob-service.js'
import { b3, b3Display, bytesEqual, toHex } from '../../castore/digest.js'
import { type Directory, directorySize, validateDirectory } from '../../castore/directory.js'
import { type DirectoryService, wrongFileSize } from '../../castore/directory-service.js'
import type { Node } from '../../castore/node.js'
import { decodeDirectory } from '../../castore/proto.js'
import type { Problem, VerifyOptions, VerifyReport } from '../../store/capabilities.js'
import { calculateNar } from '../../store/nar/render.js'
import { DEFAULT_MAX_NAR_SIZE, NarSizeMemo, NarTooLargeError, narSize } from '../../store/nar/size.js'
import * as nixbase32 from '../../store/nixbase32.js'
import { type PathInfo, validatePathInfo } from '../../store/path-info.js'
import { decodePathInfo } from '../../store/proto.js'
import { secondsSince } from '../../util/elapsed.js'
import type { ChunkInventory } from '../s3/inventory.js'
import { ChunkChecker } from '../s3/verify-chunks.js'
import type { Db } from './db.js'
import { advanceEpoch, exclusively } from './sweep-lock.js'

/*
 * verify on the shared store: blobs in a chunked object store (S3),
 * Directories and PathInfos in PostgreSQL. What it checks and how it
 * repairs follow the local store's verify (backends/local/verify.ts), one
 * line per problem; what PostgreSQL adds is its indexes, which gc and
 * `query --referrers` trust: every Directory's rows of child edges, and
 * every PathInfo's rows of references, must be exactly what the object
 * itself names. Rows are read a page at a time and a tree per path, never
 * the whole database.
 */

export interface SharedStoreParts {
  db: Db
  /** How the NAR hash check reads blobs (verifying as any read does), and a blob written after the listing is found. */
  blobs: Pick<BlobService, 'open' | 'has'>
  inventory: ChunkInventory
  directories: Pick<DirectoryService, 'get'>
  storeDir: string
}

/** Rows per query when paging through a table. */
const PAGE = 1000

type Row = { digest: Buffer; data: Buffer }

const hexDisplay = (hex: string) => b3Display(Buffer.from(hex, 'hex'))

/** Checks (and with `repair` mends) the shared store; see README `verify`. */
export async function verifySharedStore(parts: SharedStoreParts, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const started = performance.now()
  const report = await new SharedVerifier(parts, opts).run()
  report.seconds = secondsSince(started)
  return report
}

/** A PathInfo's tree as stored: its Directories and blobs (hex), and the first object it lacks. */
interface Tree {
  dirs: Set<string>
  blobs: Set<string>
  missing?: string
  /** The root Directory, if the root is one and it is stored and decodes. */
  root?: Directory
}

class SharedVerifier {
  private readonly problems: Problem[] = []
  private readonly checked = { blobs: 0, packs: 0, directories: 0, paths: 0 }
  private readonly skipped: string[] = []
  private readonly blobs: ChunkChecker
  /** Directories to remove, each with why. */
  private readonly badDirs = new Map<string, string>()
  /** PathInfos to remove (hex of the store path digest), each with its name as printed. */
  private readonly badPaths = new Map<string, string>()
  private readonly missingEdges: Array<[Buffer, Buffer]> = []
  private readonly extraEdges: Array<[Buffer, Buffer]> = []
  /** Reference rows to add or drop: referrer, reference, the line repair prints. */
  private readonly missingRefs: Array<[Buffer, Buffer, string]> = []
  private readonly extraRefs: Array<[Buffer, Buffer, string]> = []
  private readonly narSizes = new NarSizeMemo()
  /** Blobs written since the listing (hex). */
  private readonly lateBlobs = new Set<string>()
  /** With repair: index rows added back, one line each. */
  private readonly added: string[] = []
  private done = 0
  private total = 0

  constructor(
    private readonly parts: SharedStoreParts,
    private readonly opts: VerifyOptions,
  ) {
    this.blobs = new ChunkChecker(parts.inventory, this.problems)
  }

  private problem(message: string): void {
    this.problems.push({ message })
  }

  private progress = () => this.opts.onProgress?.(++this.done, this.total)

  async run(): Promise<VerifyReport> {
    await this.blobs.list()
    const scope = this.opts.paths ? await this.scopeOfPaths() : undefined
    if (scope) {
      this.total = scope.blobs.size + scope.dirs.size + scope.rows.length
      await this.blobs.check(scope.blobs, this.progress)
      for (let i = 0; i < scope.dirList.length; i += PAGE) await this.checkDirectories(await this.dirRows(scope.dirList.slice(i, i + PAGE)))
      await this.checkPathInfos(scope.rows)
    } else {
      const counts = (await this.parts.db.query<{ d: string; p: string }>('select (select count(*) from tvix_directories) d, (select count(*) from tvix_path_infos) p')).rows[0]!
      this.total = this.blobs.chunks.size + this.blobs.lists.size + Number(counts.d) + Number(counts.p)
      // Lists first: their reads judge their chunks; then the chunks no list read.
      await this.blobs.check([...this.blobs.lists, ...this.blobs.chunks], this.progress)
      for await (const rows of this.pages('tvix_directories')) await this.checkDirectories(rows)
      for await (const rows of this.pages('tvix_path_infos')) await this.checkPathInfos(rows)
    }
    this.checked.blobs = this.blobs.checkedChunks
    this.checked.packs = this.blobs.checkedLists
    let removed: string[] = []
    if (this.opts.repair) {
      removed = await this.repair(scope?.rows.map((r) => r.digest))
      await this.addReferences()
    }
    return { checked: this.checked, problems: this.problems, removed, added: this.added, skipped: this.skipped, seconds: 0 }
  }

  /** The PathInfos named and every object their trees use; a path not stored is a problem of its own. */
  private async scopeOfPaths() {
    const digests = this.opts.paths!.map((p) => Buffer.from(p.digest))
    const rows = (await this.parts.db.query<Row>('select digest, data from tvix_path_infos where digest = any($1)', [digests])).rows
    const found = new Set(rows.map((r) => toHex(r.digest)))
    for (const p of this.opts.paths!) {
      if (!found.has(toHex(p.digest))) this.problem(`path '${this.parts.storeDir}/${nixbase32.encode(p.digest)}-${p.name}' is not in the store`)
    }
    const dirs = new Set<string>()
    const blobs = new Set<string>()
    for (const r of rows) {
      const info = decodeOrUndefined(r.data)
      if (!info) continue
      const tree = await this.treeOf(info.node)
      for (const d of tree.dirs) dirs.add(d)
      for (const b of tree.blobs) blobs.add(b)
    }
    return { rows, dirs, dirList: [...dirs].map((h) => Buffer.from(h, 'hex')), blobs }
  }

  /** A table's rows a page at a time, by digest. */
  private async *pages(table: 'tvix_directories' | 'tvix_path_infos'): AsyncGenerator<Row[]> {
    let after: Buffer = Buffer.alloc(0)
    for (;;) {
      const rows = (await this.parts.db.query<Row>(`select digest, data from ${table} where digest > $1 order by digest limit $2`, [after, PAGE])).rows
      if (rows.length > 0) yield rows
      if (rows.length < PAGE) return
      after = rows[rows.length - 1]!.digest
    }
  }

  private async dirRows(digests: Buffer[]): Promise<Row[]> {
    return (await this.parts.db.query<Row>('select digest, data from tvix_directories where digest = any($1)', [digests])).rows
  }

  /** Each Directory re-hashed, decoded and validated, its children stored, its files' sizes true, its edge rows exactly its children. */
  private async checkDirectories(rows: Row[]): Promise<void> {
    const digests = rows.map((r) => r.digest)
    const edges = new Map<string, Set<string>>()
    for (const e of (await this.parts.db.query<{ parent: Buffer; child: Buffer }>('select parent, child from tvix_directory_children where parent = any($1)', [digests])).rows) {
      const k = toHex(e.parent)
      if (!edges.has(k)) edges.set(k, new Set())
      edges.get(k)!.add(toHex(e.child))
    }
    const decoded = new Map<string, Directory>()
    for (const r of rows) {
      const hex = toHex(r.digest)
      const what = `directory ${b3Display(r.digest)}`
      this.checked.directories++
      if (!bytesEqual(b3(r.data), r.digest)) {
        this.badDir(hex, `${what} is corrupt: its bytes do not match its digest`, 'corrupt')
        continue
      }
      try {
        const dir = decodeDirectory(r.data)
        validateDirectory(dir)
        decoded.set(hex, dir)
      } catch (e) {
        this.badDir(hex, `${what} is corrupt: ${(e as Error).message}`, 'corrupt')
      }
    }
    const children = [...new Set([...decoded.values()].flatMap((d) => d.directories.map((c) => toHex(c.digest))))]
    const stored = new Set((await this.dirRows(children.map((h) => Buffer.from(h, 'hex')))).map((r) => toHex(r.digest)))
    for (const [hex, dir] of decoded) {
      const what = `directory ${hexDisplay(hex)}`
      const has = edges.get(hex) ?? new Set<string>()
      const names = new Set(dir.directories.map((c) => toHex(c.digest)))
      for (const c of names) {
        if (!stored.has(c)) this.badDir(hex, `${what} refers to directory ${hexDisplay(c)}, which is missing`, `its child directory ${hexDisplay(c)} is gone`)
        if (!has.has(c)) {
          this.problem(`${what} has no row in tvix_directory_children for its child directory ${hexDisplay(c)}`)
          this.missingEdges.push([Buffer.from(hex, 'hex'), Buffer.from(c, 'hex')])
        }
      }
      for (const c of has) {
        if (names.has(c)) continue
        this.problem(`${what} has a row in tvix_directory_children for directory ${hexDisplay(c)}, which is not its child`)
        this.extraEdges.push([Buffer.from(hex, 'hex'), Buffer.from(c, 'hex')])
      }
      for (const f of dir.files) {
        const size = this.blobs.sizes.get(toHex(f.digest))
        const why = size === undefined ? undefined : wrongFileSize(f, size)
        if (why) {
          this.badDir(hex, `${what} lies: ${why}`, 'corrupt')
          break
        }
      }
    }
    for (let i = 0; i < rows.length; i++) this.progress()
  }

  private badDir(hex: string, message: string, why: string): void {
    this.problem(message)
    if (!this.badDirs.has(hex)) this.badDirs.set(hex, why)
  }

  /** Each PathInfo decoded, validated, filed under its own digest, its reference rows exactly its references, its tree complete and intact. */
  private async checkPathInfos(rows: Row[]): Promise<void> {
    const refs = new Map<string, Set<string>>()
    const q = 'select referrer, reference from tvix_path_references where referrer = any($1)'
    for (const e of (await this.parts.db.query<{ referrer: Buffer; reference: Buffer }>(q, [rows.map((r) => r.digest)])).rows) {
      const k = toHex(e.referrer)
      if (!refs.has(k)) refs.set(k, new Set())
      refs.get(k)!.add(toHex(e.reference))
    }
    for (const r of rows) {
      this.checked.paths++
      await this.checkPathInfo(r, refs.get(toHex(r.digest)) ?? new Set())
      this.progress()
    }
  }

  private async checkPathInfo(r: Row, refRows: Set<string>): Promise<void> {
    const hex = toHex(r.digest)
    let info: PathInfo
    let shown: string
    try {
      info = decodePathInfo(r.data)
      const sp = validatePathInfo(info)
      shown = `path '${this.parts.storeDir}/${nixbase32.encode(sp.digest)}-${sp.name}'`
      if (!bytesEqual(sp.digest, r.digest)) {
        this.problem(`${shown} is filed under the wrong hash (${nixbase32.encode(r.digest)})`)
        this.badPaths.set(hex, shown)
        return
      }
    } catch (e) {
      shown = `PathInfo ${nixbase32.encode(r.digest)}`
      this.problem(`${shown} is corrupt: ${(e as Error).message}`)
      this.badPaths.set(hex, shown)
      return
    }
    this.checkReferenceRows(info, r.digest, refRows, shown)
    const tree = await this.treeOf(info.node)
    if (tree.missing) {
      // Pruned by gc since it was read: nothing is wrong.
      if ((await this.parts.db.query('select 1 from tvix_path_infos where digest = $1', [r.digest])).rowCount === 0) return
      return this.problem(`${shown} cannot be served: ${tree.missing} is missing`)
    }
    const broken = [...tree.blobs].find((b) => this.blobs.isBad(b))
    const brokenDir = [...tree.dirs].find((d) => this.badDirs.has(d))
    if (broken || brokenDir) return this.problem(`${shown} cannot be served: ${broken ? `blob ${hexDisplay(broken)}` : `directory ${hexDisplay(brokenDir!)}`} is corrupt`)
    const lie = this.rootLie(info.node, tree)
    if (lie) {
      this.problem(`${shown} lies: root ${lie}`)
      this.badPaths.set(hex, shown)
      return
    }
    if (this.opts.narHash && info.narinfo) await this.checkNar(info, shown)
  }

  /** The rows of tvix_path_references for this referrer must be its references, no more, no fewer. */
  private checkReferenceRows(info: PathInfo, digest: Buffer, rows: Set<string>, shown: string): void {
    const named = new Set<string>()
    info.references.forEach((ref, i) => {
      const k = toHex(ref)
      named.add(k)
      if (rows.has(k)) return
      const of = `'${this.parts.storeDir}/${info.narinfo?.referenceNames[i] ?? nixbase32.encode(ref)}'`
      this.problem(`${shown} is missing from the referrers index of ${of}`)
      this.missingRefs.push([digest, Buffer.from(ref), `added ${shown} to the referrers index of ${of}`])
    })
    for (const k of rows) {
      if (named.has(k)) continue
      const of = `'${this.parts.storeDir}/${nixbase32.encode(Buffer.from(k, 'hex'))}'`
      this.problem(`${shown} is in the referrers index of ${of}, which it does not refer to`)
      this.extraRefs.push([digest, Buffer.from(k, 'hex'), `removed ${shown} from the referrers index of ${of}`])
    }
  }

  private rootLie(node: Node, tree: Tree): string | undefined {
    if (node.kind === 'file') {
      const size = this.blobs.sizes.get(toHex(node.digest))
      return size === undefined ? undefined : wrongFileSize(node, size)
    }
    if (node.kind !== 'directory' || !tree.root || directorySize(tree.root) === node.size) return undefined
    return `directory claims size ${node.size}, but directory ${b3Display(node.digest)} has ${directorySize(tree.root)}`
  }

  private async checkNar(info: PathInfo, shown: string): Promise<void> {
    const recorded = info.narinfo!
    const maxNarSize = this.opts.maxNarSize ?? DEFAULT_MAX_NAR_SIZE
    // The size first, from Directories alone: a tree too large to hash within the limit is skipped, not rendered.
    const size = await narSize(info.node, this.parts, { memo: this.narSizes })
    if (size > maxNarSize) {
      if (size !== recorded.narSize) return this.problem(`${shown} has NAR size ${size}, but ${recorded.narSize} is recorded`)
      this.skipped.push(`${shown}: NAR hash not checked: ${new NarTooLargeError(size, maxNarSize).message} (--max-nar-size)`)
      return
    }
    const nar = await calculateNar(info.node, this.parts)
    if (nar.narSize !== recorded.narSize || !bytesEqual(nar.narSha256, recorded.narSha256)) {
      this.problem(
        `${shown} has NAR hash sha256:${nixbase32.encode(nar.narSha256)} and size ${nar.narSize}, ` +
          `but sha256:${nixbase32.encode(recorded.narSha256)} and ${recorded.narSize} are recorded`,
      )
    }
  }

  /**
   * The tree as stored, walked by each Directory's own children (not the
   * edge rows, which may be what is wrong), a level per query after one
   * recursive query that usually finds it all.
   */
  private async treeOf(node: Node): Promise<Tree> {
    const tree = await this.walk(node)
    tree.missing ??= await this.firstMissingBlob(tree.blobs)
    return tree
  }

  /**
   * A blob the listing did not have may have been written since (by an
   * import on another machine, whose PathInfo is then newer too): it is
   * missing only if it is still not there now. Not checked: it is newer
   * than this run.
   */
  private async firstMissingBlob(blobs: Set<string>): Promise<string | undefined> {
    for (const hex of blobs) {
      if (this.blobs.has(hex) || this.lateBlobs.has(hex)) continue
      if (!(await this.parts.blobs.has(Buffer.from(hex, 'hex')))) return `blob ${hexDisplay(hex)}`
      this.lateBlobs.add(hex)
    }
    return undefined
  }

  private async walk(node: Node): Promise<Tree> {
    const tree: Tree = { dirs: new Set(), blobs: new Set() }
    const blob = (hex: string) => tree.blobs.add(hex)
    if (node.kind === 'file') blob(toHex(node.digest))
    if (node.kind !== 'directory') return tree
    const rootHex = toHex(node.digest)
    const byHex = new Map<string, Buffer>()
    const closure = await this.parts.db.query<Row>(
      `with recursive closure(digest) as (
         select $1::bytea
         union
         select c.child from tvix_directory_children c join closure on c.parent = closure.digest
       )
       select d.digest, d.data from tvix_directories d join closure using (digest)`,
      [node.digest],
    )
    for (const r of closure.rows) byHex.set(toHex(r.digest), r.data)
    tree.dirs.add(rootHex)
    for (let level = [rootHex]; level.length > 0; ) {
      const unknown = level.filter((h) => !byHex.has(h))
      if (unknown.length > 0) for (const r of await this.dirRows(unknown.map((h) => Buffer.from(h, 'hex')))) byHex.set(toHex(r.digest), r.data)
      const next: string[] = []
      for (const hex of level) {
        const bytes = byHex.get(hex)
        if (!bytes) {
          tree.missing ??= `directory ${hexDisplay(hex)}`
          continue
        }
        // A corrupt Directory has no children here: it is reported as a Directory problem.
        const dir = toHex(b3(bytes)) === hex ? decodeDirectoryOrUndefined(bytes) : undefined
        if (!dir) continue
        if (hex === rootHex) tree.root = dir
        for (const f of dir.files) blob(toHex(f.digest))
        for (const c of dir.directories) {
          const k = toHex(c.digest)
          if (tree.dirs.has(k)) continue
          tree.dirs.add(k)
          next.push(k)
        }
      }
      level = next
    }
    return tree
  }

  /**
   * Removes the bad objects, then what can no longer be read because of
   * them: Directories whose child went (followed up the edge rows, mended
   * first), then every PathInfo (of those checked) whose tree is no
   * longer complete. Every delete runs as gc's do (sweep-lock.ts): commits
   * held off and the epoch moved first, so a write that relied on what
   * goes finds it gone at its commit instead of registering a dangling
   * reference.
   */
  private async repair(pathScope: Buffer[] | undefined): Promise<string[]> {
    const db = this.parts.db
    const removed: string[] = []
    const deleting = this.blobs.badChunks.size + this.blobs.badLists.size + this.badDirs.size + this.badPaths.size + this.extraEdges.length + this.extraRefs.length > 0
    await this.exclusivelyIf(deleting, 'nothing was repaired', async () => {
      removed.push(...(await this.blobs.repair()))
      // The edges first: the removals below follow them up to the parents.
      for (const [parent, child] of this.missingEdges) {
        await db.query('insert into tvix_directory_children (parent, child) values ($1, $2) on conflict do nothing', [parent, child])
        this.added.push(`added the row in tvix_directory_children for directory ${b3Display(parent)}'s child ${b3Display(child)}`)
      }
      for (const [parent, child] of this.extraEdges) {
        await db.query('delete from tvix_directory_children where parent = $1 and child = $2', [parent, child])
        removed.push(`removed the row in tvix_directory_children for directory ${b3Display(parent)}'s non-child ${b3Display(child)}`)
      }
      for (const [referrer, reference, line] of this.extraRefs) {
        const n = (await db.query('delete from tvix_path_references where referrer = $1 and reference = $2', [referrer, reference])).rowCount
        if ((n ?? 0) > 0) removed.push(line)
      }
      if (this.badDirs.size > 0) removed.push(...(await this.removeDirectories()))
      for (const [hex, shown] of this.badPaths) {
        if (await this.removePathInfo(Buffer.from(hex, 'hex'))) removed.push(`removed ${shown} (corrupt)`)
      }
    })
    // The paths left without their tree: found holding nobody off, removed (if still so) in a section of their own.
    const broken: Row[] = []
    const collect = async (rows: Row[]) => {
      for (const r of rows) {
        const info = decodeOrUndefined(r.data)
        if (info && (await this.treeOf(info.node)).missing) broken.push(r)
      }
    }
    if (pathScope) await collect((await db.query<Row>('select digest, data from tvix_path_infos where digest = any($1)', [pathScope])).rows)
    else for await (const rows of this.pages('tvix_path_infos')) await collect(rows)
    await this.exclusivelyIf(broken.length > 0, 'the paths that can no longer be served were not removed', async () => {
      for (const r of broken) {
        const info = decodeOrUndefined(r.data)!
        const missing = (await this.treeOf(info.node)).missing
        if (missing && (await this.removePathInfo(r.digest))) removed.push(`removed path '${this.parts.storeDir}/${Buffer.from(info.node.name).toString('utf8')}' (${missing} is gone)`)
      }
    })
    return removed
  }

  /** `fn` in an exclusive section that has moved the epoch (sweep-lock.ts), if `needed`. */
  private async exclusivelyIf(needed: boolean, otherwise: string, fn: () => Promise<void>): Promise<void> {
    if (!needed) return fn()
    await exclusively(this.parts.db, { gaveUp: (s) => `gave up after waiting ${s} s for commits to end (stopped or hung?); ${otherwise}` }, async (c) => {
      await advanceEpoch(c)
      await fn()
    })
  }

  /** The bad Directories, then their parents, grandparents… by the child edges; one line each. */
  private async removeDirectories(): Promise<string[]> {
    const db = this.parts.db
    const removed: string[] = []
    const gone = [...this.badDirs]
    const seen = new Set(this.badDirs.keys())
    while (gone.length > 0) {
      const batch = gone.splice(0, PAGE)
      const digests = batch.map(([hex]) => Buffer.from(hex, 'hex'))
      await db.transaction(async (c) => {
        await c.query('delete from tvix_directories where digest = any($1)', [digests])
        await c.query('delete from tvix_directory_children where parent = any($1)', [digests])
      })
      for (const [hex, why] of batch) removed.push(`removed directory ${hexDisplay(hex)} (${why})`)
      const parents = (await db.query<{ parent: Buffer; child: Buffer }>('select parent, child from tvix_directory_children where child = any($1)', [digests])).rows
      for (const p of parents) {
        const hex = toHex(p.parent)
        if (seen.has(hex)) continue
        seen.add(hex)
        gone.push([hex, `its child directory ${b3Display(p.child)} is gone`])
      }
    }
    return removed
  }

  /** The PathInfo and its reference rows, in one transaction: whether there was one. */
  private removePathInfo(digest: Buffer): Promise<boolean> {
    return this.parts.db.transaction(async (c) => {
      const n = (await c.query('delete from tvix_path_infos where digest = $1', [digest])).rowCount
      await c.query('delete from tvix_path_references where referrer = $1', [digest])
      return (n ?? 0) > 0
    })
  }

  /** The missing reference rows of PathInfos repair left in place; one line each. */
  private async addReferences(): Promise<void> {
    for (const [referrer, reference, line] of this.missingRefs) {
      const q = 'insert into tvix_path_references (referrer, reference) select $1, $2 where exists (select 1 from tvix_path_infos where digest = $1) on conflict do nothing'
      if (((await this.parts.db.query(q, [referrer, reference])).rowCount ?? 0) > 0) this.added.push(line)
    }
  }
}

function decodeOrUndefined(data: Buffer): PathInfo | undefined {
  try {
    return decodePathInfo(data)
  } catch {
    return undefined
  }
}

function decodeDirectoryOrUndefined(data: Buffer): Directory | undefined {
  try {
    return decodeDirectory(data)
  } catch {
    return undefined
  }
}
