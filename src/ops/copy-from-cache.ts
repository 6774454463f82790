import { bytesEqual } from '../castore/digest.js'
import { IntegrityError, NotFoundError, UsageError } from '../errors.js'
import { inWriteSession, type NarSource } from '../store/capabilities.js'
import { type NarInfoFields, pathInfoFromNarInfo } from '../store/narinfo.js'
import * as nixbase32 from '../store/nixbase32.js'
import { type PublicKey, hasValidSignature } from '../store/signing.js'
import { parseBasename, parseStorePathArg } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import type { CallOptions } from '../util/call-options.js'
import { runDag } from '../util/dag.js'
import { forEachLimit } from '../util/pool.js'
import { type CopyReport, countNewObjects, newCopyReport, StagedObjects } from './copy-report.js'
import { publishIngested, withStage } from './register.js'

/** Narinfo and target lookups in flight at once: each is a round trip. */
const LOOKUPS_IN_FLIGHT = 64

export interface CacheCopyOptions extends CallOptions {
  /** NARs downloaded at once. */
  parallel?: number
  /** Keys whose valid signature admits a path that has no content address (Nix's trusted-public-keys). */
  trustedKeys?: PublicKey[]
  /** False: admit paths whatever their signatures (Nix's --no-check-sigs); hashes are checked all the same. */
  checkSigs?: boolean
  /** `bytes` are those downloaded so far (as sent, compressed). */
  onProgress?: (p: { pathsDone: number; pathsTotal: number; bytes: number }) => void
}

/**
 * Copies store paths and their closures from a binary cache, as `nix copy
 * --from` does: the closure is worked out from narinfos alone, the paths
 * the target has are skipped, every other path must carry a valid
 * signature by a trusted key (or a content address), all checked before
 * any NAR moves; then references first, `parallel` at once, each NAR is
 * streamed into the target's castore (only the chunks it lacks are
 * written), checked (FileHash, NarHash, NarSize) and only then published.
 * A path that fails leaves nothing of itself in the target; paths already
 * published before it stay, as with Nix.
 */
export function copyFromCache(from: Store & NarSource, to: Store, args: string[], opts: CacheCopyOptions = {}): Promise<CopyReport> {
  // One write session on the target: paths found there stay until the paths that refer to them are registered.
  return inWriteSession(to, (to) => copyInSession(from, to, args, opts))
}

async function copyInSession(from: Store & NarSource, to: Store, args: string[], opts: CacheCopyOptions): Promise<CopyReport> {
  const closure = await narInfoClosure(from, args, opts)
  const report = newCopyReport([...closure.values()].map((f) => f.storePath))
  const present = new Set<string>()
  await forEachLimit(closure.entries(), LOOKUPS_IN_FLIGHT, async ([hash, f]) => {
    const there = await to.pathInfos.get(nixbase32.decode(hash), { signal: opts.signal })
    if (there && bytesEqual(there.node.name, Buffer.from(f.storePath.slice(from.storeDir.length + 1)))) present.add(hash)
  })
  const missing = [...closure.keys()].filter((h) => !present.has(h))
  if (opts.checkSigs !== false) for (const h of missing) requireTrusted(closure.get(h)!, from, opts.trustedKeys ?? [])

  let pathsDone = present.size
  let downloaded = 0
  const progress = () => opts.onProgress?.({ pathsDone, pathsTotal: closure.size, bytes: downloaded })
  progress()
  const counted = new Set<string>()
  const references = (hash: string) => closure.get(hash)!.references.map(hashOfBasename)
  await runDag(missing, references, Math.max(1, opts.parallel ?? 4), async (hash) => {
    const fields = closure.get(hash)!
    await withStage(to, async (stage, to) => {
      const staged = new StagedObjects()
      const { info } = await from.fetchInto(fields, stage, {
        signal: opts.signal,
        observe: staged,
        onBytes: (n) => {
          downloaded += n
          progress()
        },
      })
      await countNewObjects(to, staged, stage.blobs, report, counted)
      await publishIngested(to, stage, info)
    })
    report.copied.push(fields.storePath)
    pathsDone++
    progress()
  })
  report.skipped = [...present].map((h) => closure.get(h)!.storePath)
  report.copied.sort()
  report.skipped.sort()
  return report
}

const hashOfBasename = (base: string) => nixbase32.encode(parseBasename(base).digest)

/** The narinfos of `args` and of everything they refer to, keyed by hash part; a path the cache lacks is an error naming who needs it. */
async function narInfoClosure(from: Store & NarSource, args: string[], opts: CallOptions): Promise<Map<string, NarInfoFields>> {
  const closure = new Map<string, NarInfoFields>()
  const wantedBy = new Map<string, string>()
  let frontier = args.map((a) => {
    const { path, sub } = parseStorePathArg(a, from.storeDir)
    if (sub.length > 0) throw new UsageError(`'${a}' is a path inside a store path; give the store path itself`)
    return nixbase32.encode(path.digest)
  })
  const named = new Map(args.map((a, i) => [frontier[i]!, a]))
  while (frontier.length > 0) {
    const next = new Set<string>()
    await forEachLimit(new Set(frontier), LOOKUPS_IN_FLIGHT, async (hash) => {
      const fields = await from.narInfo(nixbase32.decode(hash), opts)
      if (!fields) {
        const referrer = wantedBy.get(hash)
        const what = referrer ? `${from.storeDir}/${closure.get(referrer)!.references.find((r) => hashOfBasename(r) === hash)}` : named.get(hash)!
        throw new NotFoundError(`path '${what}'${referrer ? `, a reference of '${closure.get(referrer)!.storePath}',` : ''} is not in binary cache '${from.sourceLabel}'`)
      }
      closure.set(hash, fields)
      for (const r of fields.references) {
        const h = hashOfBasename(r)
        if (closure.has(h) || next.has(h)) continue
        wantedBy.set(h, hash)
        next.add(h)
      }
    })
    frontier = [...next].filter((h) => !closure.has(h))
  }
  return closure
}

/** As Nix (require-sigs): a path with neither a content address nor a valid signature by a trusted key is refused before its NAR is fetched. */
export function requireTrusted(fields: NarInfoFields, from: Store & NarSource, keys: PublicKey[]): void {
  if (fields.ca) return
  const info = pathInfoFromNarInfo(fields, { kind: 'symlink', name: new Uint8Array(0), target: new Uint8Array(0) }, from.storeDir)
  if (hasValidSignature(info, keys, from.storeDir)) return
  throw new IntegrityError(
    `cannot add path '${fields.storePath}' from binary cache '${from.sourceLabel}': it lacks a valid signature by a trusted key; give --trusted-public-keys or --no-check-sigs`,
  )
}
