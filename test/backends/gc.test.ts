import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { collectGarbage, type GcOptions } from '../../src/backends/local/gc.js'
import { type LocalStore, openLocalStore } from '../../src/backends/local/index.js'
import { verifyStore } from '../../src/backends/local/verify.js'
import { readAll } from '../../src/castore/blob-service.js'
import { directoryDigest, directoryFromEntries } from '../../src/castore/directory.js'
import { ConflictError, TimeoutError } from '../../src/errors.js'
import { toHex } from '../../src/castore/digest.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import { addRoot } from '../../src/ops/roots.js'
import { encodePathInfo } from '../../src/store/proto.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { PathInfo } from '../../src/store/path-info.js'
import { parseStorePathArg } from '../../src/store/store-path.js'
import { randomBytes } from '../helpers/trees.js'

const made: string[] = []
const scratch = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-gc-'))
  made.push(dir)
  return dir
}
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true })
})
const NOW: Pick<GcOptions, 'graceMs'> = { graceMs: 0 }

/** A directory tree from a {relative path: contents} map. */
function tree(files: Record<string, string | Buffer>): string {
  const dir = scratch()
  for (const [rel, data] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true })
    fs.writeFileSync(path.join(dir, rel), data)
  }
  return dir
}

async function narOf(store: LocalStore, p: string): Promise<Buffer> {
  return readAll(await exportNar(store, p))
}

const objectFiles = (root: string, top: 'blobs' | 'dirs' | 'pathinfo'): string[] => {
  const base = path.join(root, top)
  if (!fs.existsSync(base)) return []
  return (fs.readdirSync(base, { recursive: true }) as string[]).filter((n) => fs.statSync(path.join(base, n)).isFile())
}

/** Registers a second PathInfo for `of`'s tree that references `refs` (as a build output would). */
async function withReferences(store: LocalStore, of: string, name: string, refs: string[]): Promise<string> {
  const base = (await store.pathInfos.get(parseStorePathArg(of).path.digest))!
  const digest = randomBytes(20, name.length * 7919 + refs.length)
  const basename = `${nixbase32.encode(digest)}-${name}`
  const refPaths = refs.map((r) => parseStorePathArg(r).path)
  const info: PathInfo = {
    node: { ...base.node, name: Buffer.from(basename) },
    references: refPaths.map((r) => r.digest),
    narinfo: { ...base.narinfo!, referenceNames: refPaths.map((r) => `${nixbase32.encode(r.digest)}-${r.name}`), ca: undefined },
  }
  await store.pathInfos.put(info)
  return `/nix/store/${basename}`
}

async function assertClean(store: LocalStore): Promise<void> {
  const r = await verifyStore(store, { narHash: true })
  assert.deepEqual(r.problems, [])
}

describe('gc on a local store', () => {
  test('default gc deletes orphaned blobs and directories, never a PathInfo, and reports what it freed', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    const kept = await importPath(store, tree({ a: 'kept', 'd/b': 'kept too' }))
    // Orphans: what an interrupted import leaves, castore objects no PathInfo reaches.
    const orphanBlob = await store.blobs.put(Buffer.from('orphan'))
    const orphanTree = await importPath(store, tree({ 'x/y': 'only here', big: randomBytes(3 << 20, 5) }))
    fs.rmSync(path.join(root, 'pathinfo', nixbase32.encode(parseStorePathArg(orphanTree.storePath).path.digest)))
    const before = objectFiles(root, 'blobs').length + objectFiles(root, 'dirs').length

    const dry = await collectGarbage(store, { ...NOW, dryRun: true })
    assert.equal(objectFiles(root, 'blobs').length + objectFiles(root, 'dirs').length, before, 'a dry run deletes nothing')
    const r = await collectGarbage(store, NOW)
    assert.deepEqual({ ...r, seconds: 0, writersHeldOffSeconds: 0, dryRun: true }, { ...dry, seconds: 0, writersHeldOffSeconds: 0 })
    assert.deepEqual(r.paths, [])
    assert.equal(r.blobs, 2) // "orphan", "only here"
    assert.equal(r.packs, 1) // big
    assert.equal(r.directories, 2) // the orphan tree's root and x/
    assert.ok(r.bytes > 3 << 20)
    assert.equal(await store.blobs.has(orphanBlob.digest), false)
    assert.equal(objectFiles(root, 'pathinfo').length, 1)
    assert.match((await narOf(store, kept.storePath)).toString('latin1'), /kept too/)
    await assertClean(store)
    // Nothing left to do: a second run frees nothing.
    const again = await collectGarbage(store, NOW)
    assert.equal(again.blobs + again.packs + again.directories, 0)
  })

  test('objects written within the grace period are kept, and counted', async () => {
    const store = await openLocalStore(scratch())
    const orphan = await store.blobs.put(Buffer.from('fresh orphan'))
    const r = await collectGarbage(store, { graceMs: 60_000 })
    assert.equal(r.blobs, 0)
    assert.equal(r.keptYoung, 1)
    assert.ok(await store.blobs.has(orphan.digest))
  })

  test('--prune keeps the closure of every root, by references, and deletes the rest with their data', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    const lib = await importPath(store, tree({ 'lib.so': 'library' }))
    const app = await withReferences(store, (await importPath(store, tree({ bin: 'app' }))).storePath, 'app', [lib.storePath])
    const junk = await importPath(store, tree({ junk: 'junk', big: randomBytes(2 << 20, 9) }))
    await addRoot(store, 'app', app)

    const r = await collectGarbage(store, { ...NOW, prune: true })
    // The imported "bin" tree's own source path is unrooted too: it goes, its data stays (app uses the same tree).
    assert.equal(r.paths.length, 2)
    assert.ok(r.paths.includes(junk.storePath))
    assert.equal(r.packs, 1)
    assert.ok((await narOf(store, lib.storePath)).length > 0, 'a reference of a rooted path stays')
    assert.ok((await narOf(store, app)).length > 0)
    await assert.rejects(narOf(store, junk.storePath), /is not valid/)
    await assertClean(store)
  })

  test('--prune --older-than only deletes paths registered before then', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    const old = await importPath(store, tree({ f: 'old' }))
    const recent = await importPath(store, tree({ f: 'recent' }))
    const hourAgo = new Date(Date.now() - 48 * 3600_000)
    fs.utimesSync(path.join(root, 'pathinfo', nixbase32.encode(parseStorePathArg(old.storePath).path.digest)), hourAgo, hourAgo)
    const r = await collectGarbage(store, { ...NOW, prune: true, olderThanMs: 24 * 3600_000 })
    assert.deepEqual(r.paths, [old.storePath])
    assert.ok((await narOf(store, recent.storePath)).length > 0)
  })

  test('--delete removes a path nothing needs, and refuses one a root or another path needs', async () => {
    const store = await openLocalStore(scratch())
    const lib = await importPath(store, tree({ l: 'lib' }))
    const app = await withReferences(store, (await importPath(store, tree({ a: 'app' }))).storePath, 'app', [lib.storePath])
    const rooted = await importPath(store, tree({ r: 'rooted' }))
    const loose = await importPath(store, tree({ x: 'loose' }))
    await addRoot(store, 'keep', rooted.storePath)
    const del = (p: string) => collectGarbage(store, { ...NOW, deletePaths: [parseStorePathArg(p).path] })

    await assert.rejects(del(lib.storePath), new RegExp(`cannot delete path '${lib.storePath}' since it is still alive: '${app}' refers to it`))
    await assert.rejects(del(rooted.storePath), /since it is still alive: GC root 'keep' needs it/)
    await assert.rejects(del('/nix/store/00000000000000000000000000000000-nope'), /not in the store/)
    const r = await del(loose.storePath)
    assert.deepEqual(r.paths, [loose.storePath])
    assert.equal(r.blobs, 1)
    // Deleting a path together with the one that refers to it is allowed.
    const both = await collectGarbage(store, { ...NOW, deletePaths: [app, lib.storePath].map((p) => parseStorePathArg(p).path) })
    assert.equal(both.paths.length, 2)
    await assertClean(store)
  })

  test('a pack that borrows chunks from another keeps it alive; the borrowed-from pack goes only with it', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    const v1 = randomBytes(4 << 20, 21)
    const v2 = Buffer.from(v1)
    v2.write('a small edit in the middle', 2 << 20)
    const a = await importPath(store, tree({ big: v1 }))
    const b = await importPath(store, tree({ big: v2 }))
    await addRoot(store, 'b', b.storePath)
    const packsOf = () => objectFiles(root, 'blobs').filter((n) => n.endsWith('.pack')).length
    assert.equal(packsOf(), 2)
    const r = await collectGarbage(store, { ...NOW, prune: true })
    assert.deepEqual(r.paths, [a.storePath])
    assert.equal(r.packs, 0, 'v1 pack holds chunks v2 uses')
    assert.match((await narOf(store, b.storePath)).toString('latin1'), /a small edit in the middle/)
    await assertClean(store)
    await store.roots.remove('b')
    const r2 = await collectGarbage(store, { ...NOW, prune: true })
    assert.equal(r2.packs, 2)
    assert.equal(packsOf(), 0)
    await assertClean(store)
  })

  test('a store that remembers chunks of a pack gc deleted (another process) does not refer to them afterwards', async () => {
    const root = scratch()
    const writer = await openLocalStore(root)
    const gcProcess = await openLocalStore(root)
    const data = randomBytes(4 << 20, 33)
    const first = await importPath(writer, tree({ big: data })) // the writer's chunk index now knows this pack
    await collectGarbage(gcProcess, { ...NOW, prune: true })
    assert.equal(objectFiles(root, 'blobs').length, 0)
    // Same chunks again (plus one more): they must be written anew, not borrowed from the deleted pack.
    const again = await importPath(writer, tree({ big: Buffer.concat([data, Buffer.from('tail')]) }))
    assert.notEqual(again.storePath, first.storePath)
    assert.equal((await narOf(writer, again.storePath)).length > 4 << 20, true)
    await assertClean(writer)
  })

  test('gc waits for a commit under way, and commits wait while gc sweeps', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    await importPath(store, tree({ f: 'x' }))
    const other = await openLocalStore(root)
    const events: string[] = []
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    const commit = other.root.locks.commit(undefined, async () => {
      events.push('commit open')
      await held
      events.push('commit end')
    })
    await new Promise((r) => setTimeout(r, 20))
    let waitedFor: number[] = []
    const gc = collectGarbage(store, { ...NOW, onWait: (w) => (waitedFor = w.map((x) => x.pid)) }).then(() => events.push('gc done'))
    await new Promise((r) => setTimeout(r, 100))
    events.push('release')
    release()
    await Promise.all([commit, gc])
    assert.deepEqual(events, ['commit open', 'release', 'commit end', 'gc done'])
    assert.deepEqual(waitedFor, [process.pid])
  })

  test('a write session that waits for input holds nothing: gc runs meanwhile, and a commit relying on what it swept fails and registers nothing', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    await importPath(store, tree({ f: 'x' }))
    // An orphan blob (nothing refers to it), older than the grace period of 0.
    const orphan = await store.blobs.put(Buffer.from('an orphan the session finds stored'))
    const other = await openLocalStore(root)
    let resume!: () => void
    const input = new Promise<void>((r) => (resume = r))
    let found = false
    const session = other.writeSession(async (view) => {
      // Found stored, so not written again: the session relies on it.
      found = await view.blobs.has(orphan.digest)
      await input // a client that has not sent the rest yet
      const dir = directoryFromEntries([{ kind: 'file', name: Buffer.from('f'), digest: orphan.digest, size: orphan.size, executable: false }])
      return view.directories.putClosure([dir])
    })
    await new Promise((r) => setTimeout(r, 20))
    // Not held off by the stalled session: the sweep takes the orphan.
    const r = await collectGarbage(store, NOW)
    assert.equal(r.blobs, 1)
    assert.equal(await store.blobs.has(orphan.digest), false)
    resume()
    await assert.rejects(session, (e: Error) => e instanceof ConflictError && /garbage-collected while this write was under way/.test(e.message))
    assert.equal(found, true)
    const dirs = objectFiles(root, 'dirs')
    // The Directory that would have named a missing blob was not published.
    const dir = directoryFromEntries([{ kind: 'file', name: Buffer.from('f'), digest: orphan.digest, size: orphan.size, executable: false }])
    assert.equal(dirs.some((n) => n.endsWith(toHex(directoryDigest(dir)))), false)
    // A new session starts from the store as it is now, and succeeds.
    await other.writeSession(async (view) => {
      await view.blobs.put(Buffer.from('an orphan the session finds stored'))
      await view.directories.putClosure([dir])
    })
    assert.equal((await verifyStore(store)).problems.length, 0)
  })

  test('concurrent write sessions in one process each answer for what they rely on: the one whose object gc swept fails, the other commits', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    await importPath(store, tree({ f: 'x' }))
    const kept = await store.blobs.put(Buffer.from('x')) // stored already: the imported path's file
    const orphan = await store.blobs.put(Buffer.from('an orphan one session finds stored'))
    // One store, two sessions at once, as a daemon's calls: each relies on one blob, then waits for input.
    const daemon = await openLocalStore(root)
    let resume!: () => void
    const input = new Promise<void>((r) => (resume = r))
    const fileDir = (b: { digest: Uint8Array; size: number }) => directoryFromEntries([{ kind: 'file', name: Buffer.from('f'), digest: b.digest, size: b.size, executable: false }])
    const session = (blob: { digest: Uint8Array; size: number }) =>
      daemon.writeSession(async (view) => {
        assert.equal(await view.blobs.has(blob.digest), true)
        await input
        return view.directories.putClosure([fileDir(blob)])
      })
    const onOrphan = session(orphan)
    const onKept = session(kept)
    await new Promise((r) => setTimeout(r, 20))
    assert.equal((await collectGarbage(store, NOW)).blobs, 1)
    resume()
    const [lost, survived] = await Promise.allSettled([onOrphan, onKept])
    assert.equal(lost.status, 'rejected')
    assert.ok((lost as PromiseRejectedResult).reason instanceof ConflictError)
    assert.equal(survived.status, 'fulfilled', String((survived as PromiseRejectedResult).reason))
    const dirs = objectFiles(root, 'dirs')
    assert.equal(dirs.some((n) => n.endsWith(toHex(directoryDigest(fileDir(orphan))))), false, 'nothing naming the swept blob was published')
    assert.equal(dirs.some((n) => n.endsWith(toHex(directoryDigest(fileDir(kept))))), true)
    assert.equal((await verifyStore(store)).problems.length, 0)
  })

  test('gc gives up, deleting nothing, when a commit outlasts maxWaitMs; writers are not held off after that', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    await importPath(store, tree({ f: 'x' }))
    const orphan = await store.blobs.put(Buffer.from('kept: gc gives up'))
    const stuck = await openLocalStore(root)
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    // A commit that never ends (a stopped process would look the same to gc).
    const commit = stuck.root.locks.commit(undefined, () => held)
    await new Promise((r) => setTimeout(r, 20))
    await assert.rejects(collectGarbage(store, { ...NOW, maxWaitMs: 200 }), (e: Error) => e instanceof TimeoutError && /nothing was deleted/.test(e.message))
    assert.equal(await store.blobs.has(orphan.digest), true)
    // No gc token is left behind: another writer commits at once.
    assert.deepEqual(fs.readdirSync(path.join(root, 'locks')).filter((n) => n.startsWith('gc-')), [])
    await importPath(await openLocalStore(root), tree({ g: 'y' }))
    release()
    await commit
  })

  test('tokens and temp files of killed processes are recognised as stale and swept', async () => {
    const root = scratch()
    const store = await openLocalStore(root)
    await importPath(store, tree({ f: 'x' }))
    // A pid that is not running (beyond pid_max) with a writer token, a sweeper token and a temp file.
    const dead = 4194304 + 17
    fs.writeFileSync(path.join(root, 'locks', `w-${dead}-123-abcd`), '')
    fs.writeFileSync(path.join(root, 'locks', `gc-${dead}-123-abcd`), '')
    fs.writeFileSync(path.join(root, 'tmp', `${dead}-123-0123456789abcdef`), 'half a blob')
    // A stale sweeper token does not hold writers off, and a stale writer token does not hold gc.
    await importPath(store, tree({ g: 'y' }))
    const r = await collectGarbage(store, NOW)
    assert.equal(r.tempFiles, 3)
    assert.deepEqual(fs.readdirSync(path.join(root, 'tmp')), [])
    assert.deepEqual(fs.readdirSync(path.join(root, 'locks')).filter((n) => n !== 'epoch'), [])
  })
})

describe('verify on a local store', () => {
  async function populated() {
    const root = scratch()
    const store = await openLocalStore(root)
    const smallDir = tree({ a: 'alpha', 'd/b': 'beta', 'd/e/c': 'gamma' })
    const small = await importPath(store, smallDir)
    const big = await importPath(store, tree({ big: randomBytes(3 << 20, 77) }))
    return { root, store, small, smallDir, big }
  }
  const fileOf = (root: string, kind: 'blobs' | 'dirs', hex: string, suffix = '') => path.join(root, kind, 'b3', hex.slice(0, 2), hex + suffix)
  const overwrite = (file: string, at: number, bytes: string) => {
    fs.chmodSync(file, 0o644)
    const fd = fs.openSync(file, 'r+')
    fs.writeSync(fd, Buffer.from(bytes), 0, bytes.length, at)
    fs.closeSync(fd)
  }

  test('a clean store verifies clean, with and without --nar-hash, whole or by path', async () => {
    const { store, small } = await populated()
    const r = await verifyStore(store, { narHash: true })
    assert.deepEqual(r.problems, [])
    assert.deepEqual(r.checked, { blobs: 3, packs: 1, directories: 4, paths: 2 })
    const one = await verifyStore(store, { paths: [parseStorePathArg(small.storePath).path] })
    assert.deepEqual(one.checked, { blobs: 3, packs: 0, directories: 3, paths: 1 })
  })

  test('a corrupt blob is reported with every path it breaks; --repair removes both, and a re-import heals', async () => {
    const { root, store, small, smallDir } = await populated()
    const info = (await store.pathInfos.get(parseStorePathArg(small.storePath).path.digest))!
    const rootDir = (await store.directories.get((info.node as { digest: Uint8Array }).digest))!
    const blobA = toHex(rootDir.files.find((f) => Buffer.from(f.name).toString() === 'a')!.digest)
    overwrite(fileOf(root, 'blobs', blobA), 0, 'ALPHA')
    const r = await verifyStore(store)
    assert.equal(r.problems.length, 2, r.problems.map((p) => p.message).join('\n'))
    assert.match(r.problems[0]!.message, /^blob b3:\S+ is corrupt: its bytes do not match its digest$/)
    assert.match(r.problems[1]!.message, new RegExp(`^path '${small.storePath}' cannot be served: blob b3:\\S+ is corrupt$`))
    const fixed = await verifyStore(store, { repair: true })
    assert.equal(fixed.removed.length, 2)
    assert.match(fixed.removed[1]!, new RegExp(`^removed path '${small.storePath}' \\(blob b3:\\S+ is gone\\)$`))
    assert.deepEqual((await verifyStore(store)).problems, [])
    assert.equal((await importPath(store, smallDir)).storePath, small.storePath)
    await assertClean(store)
  })

  test('a corrupt directory, a corrupt pack chunk and a missing borrowed-from pack are each found', async () => {
    const { root, store, small, big } = await populated()
    const smallInfo = (await store.pathInfos.get(parseStorePathArg(small.storePath).path.digest))!
    const dirHex = toHex((smallInfo.node as { digest: Uint8Array }).digest)
    overwrite(fileOf(root, 'dirs', dirHex), 2, 'zz')
    const bigInfo = (await store.pathInfos.get(parseStorePathArg(big.storePath).path.digest))!
    const bigDir = (await store.directories.get((bigInfo.node as { digest: Uint8Array }).digest))!
    const packHex = toHex(bigDir.files[0]!.digest)
    overwrite(fileOf(root, 'blobs', packHex, '.pack'), 100, 'xxxx')
    const r = await verifyStore(store)
    const text = r.problems.map((p) => p.message).join('\n')
    assert.match(text, /directory b3:\S+ is corrupt: its bytes do not match its digest/)
    assert.match(text, /blob b3:\S+ \(pack\): chunk b3:\S+ in .* is corrupt/)
    assert.match(text, new RegExp(`path '${small.storePath}' cannot be served`))
    assert.match(text, new RegExp(`path '${big.storePath}' cannot be served`))
    const fixed = await verifyStore(store, { repair: true })
    assert.ok(fixed.removed.length >= 4, fixed.removed.join('\n'))
    assert.deepEqual((await verifyStore(store)).problems, [])
  })

  test('--nar-hash finds a PathInfo whose recorded NAR hash is wrong', async () => {
    const { root, store, small } = await populated()
    const sp = parseStorePathArg(small.storePath).path
    const info = (await store.pathInfos.get(sp.digest))!
    const file = path.join(root, 'pathinfo', nixbase32.encode(sp.digest))
    fs.chmodSync(file, 0o644)
    fs.writeFileSync(file, encodePathInfo({ ...info, narinfo: { ...info.narinfo!, narSize: info.narinfo!.narSize + 8 } }))
    assert.deepEqual((await verifyStore(store)).problems, [])
    const r = await verifyStore(store, { narHash: true })
    assert.equal(r.problems.length, 1)
    assert.match(r.problems[0]!.message, new RegExp(`^path '${small.storePath}' has NAR hash sha256:\\S+ and size \\d+, but sha256:\\S+ and \\d+ are recorded$`))
  })
})
