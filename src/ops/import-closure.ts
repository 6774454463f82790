import fs from 'node:fs'
import path from 'node:path'
import { renameNode } from '../castore/node.js'
import { IntegrityError, InvalidInputError, NotFoundError } from '../errors.js'
import { ingestPath } from '../store/ingest-fs.js'
import * as nixbase32 from '../store/nixbase32.js'
import { parseCa, parseSha256 } from '../store/narinfo.js'
import type { PathInfo, Signature } from '../store/path-info.js'
import { basename, parseStorePathArg } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { runDag } from '../util/dag.js'
import { forEachLimit } from '../util/pool.js'
import { type CopyReport, countNewObjects, newCopyReport, StagedObjects } from './copy-report.js'
import { publishIngested, withStage } from './register.js'
import { inWriteSession } from '../store/capabilities.js'

/** One path of a closure listing, whatever format it came in. */
export interface ClosureEntry {
  path: string
  narSha256: Uint8Array
  narSize: number
  references: string[]
  deriver?: string
  signatures: string[]
  ca?: string
}

interface RawEntry {
  path?: unknown
  narHash?: unknown
  narSize?: unknown
  references?: unknown
  deriver?: unknown
  signatures?: unknown
  ca?: unknown
}

/**
 * Reads the closure listings Nix produces: `nix path-info --json
 * --recursive` (an array up to Nix 2.18, an object keyed by path from
 * 2.19) and an `exportReferencesGraph` file (`{"<name>": [entries]}`).
 */
export function parseClosureListing(text: string): ClosureEntry[] {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    throw new InvalidInputError(`the closure listing is not JSON: ${(e as Error).message}`)
  }
  let raw: RawEntry[]
  if (Array.isArray(json)) raw = json
  else if (json && typeof json === 'object') {
    const values = Object.values(json)
    const graph = values.find((v) => Array.isArray(v))
    if (graph && values.length === 1) raw = graph as RawEntry[]
    else raw = Object.entries(json).map(([p, v]) => ({ ...(v as RawEntry), path: p }))
  } else throw new InvalidInputError('the closure listing must be a JSON array or object')
  return raw.map((e, i) => entry(e, i))
}

function entry(e: RawEntry, i: number): ClosureEntry {
  const where = `closure listing entry ${i}`
  if (!e || typeof e !== 'object') throw new InvalidInputError(`${where} is not an object (a path Nix reported as invalid?)`)
  if (typeof e.path !== 'string') throw new InvalidInputError(`${where} has no "path"`)
  if (typeof e.narHash !== 'string') throw new InvalidInputError(`${where} (${e.path}) has no "narHash"`)
  if (typeof e.narSize !== 'number') throw new InvalidInputError(`${where} (${e.path}) has no "narSize"`)
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [])
  return {
    path: e.path,
    narSha256: parseSha256(e.narHash),
    narSize: e.narSize,
    references: strings(e.references),
    deriver: typeof e.deriver === 'string' ? e.deriver : undefined,
    signatures: strings(e.signatures),
    ca: typeof e.ca === 'string' ? e.ca : undefined,
  }
}

/** Builds the PathInfo a listing entry describes, around an ingested root node. */
function pathInfoFor(e: ClosureEntry, store: Store, root: PathInfo['node']): PathInfo {
  const self = parseStorePathArg(e.path, store.storeDir).path
  const refs = e.references.map((r) => parseStorePathArg(r, store.storeDir).path).sort((a, b) => (basename(a) < basename(b) ? -1 : basename(a) > basename(b) ? 1 : 0))
  const deriver = e.deriver && e.deriver !== 'unknown-deriver' ? parseStorePathArg(e.deriver, store.storeDir).path : undefined
  const signatures: Signature[] = e.signatures.map((s) => {
    const i = s.indexOf(':')
    return { name: s.slice(0, i), data: Buffer.from(s.slice(i + 1), 'base64') }
  })
  return {
    node: renameNode(root, Buffer.from(basename(self))),
    references: refs.map((r) => r.digest),
    narinfo: {
      narSize: e.narSize,
      narSha256: e.narSha256,
      signatures,
      referenceNames: refs.map(basename),
      deriver: deriver && { digest: deriver.digest, name: deriver.name.replace(/\.drv$/, '') },
      ca: e.ca ? parseCa(e.ca) : undefined,
    },
  }
}

/**
 * Imports the paths of a closure listing from the filesystem (under
 * `nixRoot`, for a chroot store such as `local?root=DIR`), references
 * first, skipping paths the store has. Each path's NAR hash must match
 * the listing, so what is stored is what Nix registered.
 */
export function importClosure(store: Store, entries: ClosureEntry[], opts: { nixRoot?: string } = {}): Promise<CopyReport> {
  // One write session: paths found stored stay until the paths that refer to them are registered.
  return inWriteSession(store, (store) => importInSession(store, entries, opts))
}

async function importInSession(store: Store, entries: ClosureEntry[], opts: { nixRoot?: string }): Promise<CopyReport> {
  const byHash = new Map(entries.map((e) => [nixbase32.encode(parseStorePathArg(e.path, store.storeDir).path.digest), e]))
  const present = new Set<string>()
  await forEachLimit(byHash.keys(), 64, async (h) => {
    if (await store.pathInfos.get(nixbase32.decode(h))) present.add(h)
  })
  const report = newCopyReport([...byHash.values()].map((e) => e.path))
  report.skipped = [...present].map((h) => byHash.get(h)!.path).sort()
  const counted = new Set<string>()
  const refHashes = (h: string) => byHash.get(h)!.references.map((r) => nixbase32.encode(parseStorePathArg(r, store.storeDir).path.digest))
  for (const [h, e] of byHash) {
    if (present.has(h)) continue
    for (const r of refHashes(h)) {
      if (r !== h && !byHash.has(r) && !(await store.pathInfos.get(nixbase32.decode(r)))) {
        throw new InvalidInputError(`${e.path} refers to ${r}, which is neither in the listing nor in the store`)
      }
    }
  }
  const missing = [...byHash.keys()].filter((h) => !present.has(h))
  // References first, one path at a time: ingest is already concurrent inside.
  await runDag(missing, refHashes, 1, async (h) => {
    const e = byHash.get(h)!
    const onDisk = path.join(opts.nixRoot ?? '/', e.path)
    if (!fs.lstatSync(onDisk, { throwIfNoEntry: false })) {
      const hint = opts.nixRoot === undefined ? ' (for a listing from a chroot store, such as local?root=DIR, give --nix-root DIR)' : ''
      throw new NotFoundError(`${onDisk} does not exist: the listing names ${e.path}, which is imported from the filesystem${hint}`)
    }
    await withStage(store, async (stage, store) => {
      const staged = new StagedObjects()
      const ingested = await ingestPath(onDisk, stage, undefined, { observe: staged })
      if (ingested.narSize !== e.narSize || Buffer.compare(ingested.narSha256, e.narSha256) !== 0) {
        throw new IntegrityError(`${onDisk} does not match the NAR hash and size the listing gives for ${e.path}`)
      }
      await countNewObjects(store, staged, stage.blobs, report, counted)
      await publishIngested(store, stage, pathInfoFor(e, store, ingested.root))
    })
    report.copied.push(e.path)
  })
  report.copied.sort()
  return report
}
