/**
 * readAhead: a tree read from a slow store (a daemon) with its Directories
 * in one recursive Get and the next files fetched while one is rendered.
 * In-process over a memory store, with a source that counts what is in
 * flight, so the bounds and the order are observed, not timed.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { type TestContext, test } from 'node:test'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { readAll } from '../../src/castore/blob-service.js'
import { type B3Digest, b3, bytesEqual, toHex } from '../../src/castore/digest.js'
import type { Node } from '../../src/castore/node.js'
import { type Directory, directoryDigest } from '../../src/castore/directory.js'
import { encodeDirectory } from '../../src/castore/proto.js'
import { LARGER, readAhead, type TreeSource } from '../../src/castore/read-ahead.js'
import { IntegrityError } from '../../src/errors.js'
import { importPath } from '../../src/ops/import-paths.js'
import { renderNar } from '../../src/store/nar/render.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

/** A tree with ~2,000 small files, nested folders, files above the fetch-ahead size, duplicates, empty files and symlinks. */
function makeMixedTree(root: string): string {
  const dir = makeTree(root, 'wide', 'mixed-wide')
  fs.mkdirSync(path.join(dir, 'nested/deeper'), { recursive: true })
  fs.writeFileSync(path.join(dir, 'nested/deeper/big.bin'), randomBytes(3 << 20, 7))
  fs.writeFileSync(path.join(dir, 'nested/a-copy'), fs.readFileSync(path.join(dir, 'f0001')))
  fs.writeFileSync(path.join(dir, 'nested/empty'), '')
  fs.writeFileSync(path.join(dir, 'nested/z.bin'), randomBytes((1 << 20) + 1, 8))
  fs.symlinkSync('deeper/big.bin', path.join(dir, 'nested/link'))
  return dir
}

async function stored(dir: string) {
  const store = openMemoryStore()
  const { info } = await importPath(store, dir)
  return { store, root: info.node }
}

/** `store` as a source that records the Reads in flight and lets a test fail or hold some. */
function watched(store: TreeSource, failOn?: B3Digest) {
  const seen = { inFlight: 0, maxInFlight: 0, opens: 0, opened: [] as string[], signals: [] as AbortSignal[], closureDone: false }
  const source: TreeSource = {
    directories: {
      get: (d, o) => store.directories.get(d, o),
      getClosure: (d, o) =>
        (async function* () {
          try {
            yield* store.directories.getClosure(d, o)
          } finally {
            seen.closureDone = true
          }
        })(),
    },
    blobs: {
      open: async (d, o) => {
        seen.opens++
        seen.opened.push(toHex(d))
        if (o?.signal) seen.signals.push(o.signal)
        seen.inFlight++
        seen.maxInFlight = Math.max(seen.maxInFlight, seen.inFlight)
        try {
          // A turn of the event loop, as a round trip would take.
          await new Promise((r) => setImmediate(r))
          if (failOn && bytesEqual(d, failOn)) throw new IntegrityError('blob is corrupt (test)')
          return await store.blobs.open(d, o)
        } finally {
          seen.inFlight--
        }
      },
    },
  }
  return { source, seen }
}

/**
 * Renders `dir` (imported into a memory store) read ahead through a
 * watched source, checks the NAR, and says what the source saw. `lag`:
 * turns of the event loop the render starts after the walk, as a render
 * waiting on its output would.
 */
async function renderedAhead(t: TestContext, dir: string, lag = 0) {
  const { store, root: node } = await stored(dir)
  const { source, seen } = watched(store)
  const ahead = readAhead(source, node)
  for (let i = 0; i < lag; i++) await new Promise((r) => setImmediate(r))
  const nar = await readAll(renderNar(node, ahead.reader))
  ahead.stop()
  // The oracle: Nix's own NAR of the folder where Nix is installed, else our plain (uncached) render.
  const want = nixMissing() ? await readAll(renderNar(node, store)) : NixStore.dump(dir)
  if (nixMissing()) t.diagnostic(`compared with a plain render: ${nixMissing()}`)
  assert.ok(nar.equals(want), 'NAR bytes differ')
  return seen
}

test('a tree read ahead renders the same NAR as nix-store --dump, with a bounded number of Reads in flight', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'read-ahead-'))
  try {
    const dir = makeMixedTree(root)
    const seen = await renderedAhead(t, dir)
    assert.ok(seen.maxInFlight >= 2, `Reads were not overlapped (at most ${seen.maxInFlight} in flight)`)
    assert.ok(seen.maxInFlight <= 9, `${seen.maxInFlight} Reads in flight`)
    assert.ok(seen.closureDone)
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})

/** What a render gives before it fails, and how it fails. */
async function renderUntilFailure(node: Node, reader: TreeSource): Promise<{ out: Buffer; error: unknown }> {
  const got: Uint8Array[] = []
  try {
    for await (const c of renderNar(node, reader)) got.push(c)
  } catch (error) {
    return { out: Buffer.concat(got), error }
  }
  throw new Error('the render did not fail')
}

test('a Read that fails fails the render where its file is: the same bytes out as without read-ahead, then the same one error', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'read-ahead-'))
  try {
    const dir = makeMixedTree(root)
    const { store, root: node } = await stored(dir)
    const whole = await readAll(renderNar(node, store))
    // A file in the middle of the NAR, with bytes of its own (some small files are empty and share the empty blob):
    // the walk has fetched far past it before the render gets there.
    const dirNode = (await store.directories.get((node as Extract<Node, { kind: 'directory' }>).digest))!
    const victim = dirNode.files.find((f) => f.name.toString() >= 'f1000' && f.size > 32)!
    const plain = await renderUntilFailure(node, watched(store, victim.digest).source)
    const ahead = readAhead(watched(store, victim.digest).source, node)
    const got = await renderUntilFailure(node, ahead.reader)
    ahead.stop()
    assert.ok(got.error instanceof IntegrityError && /test/.test(got.error.message), String(got.error))
    assert.equal(String(got.error), String(plain.error))
    assert.ok(got.out.length > 0 && got.out.equals(plain.out), `${got.out.length} bytes out before the failure, ${plain.out.length} without read-ahead`)
    assert.ok(whole.subarray(0, got.out.length).equals(got.out), 'the bytes before the failure are not the NAR prefix')
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})

/** 40 files of 1 MiB: 40 MiB, of which the walk may hold its 8 MiB bound plus the Reads in flight. */
function makeMibFiles(root: string): string {
  const dir = path.join(root, 'many-mib')
  fs.mkdirSync(dir)
  for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(dir, `f${String(i).padStart(2, '0')}`), randomBytes(1 << 20, 100 + i))
  return dir
}

test('what is fetched ahead stays within its byte bound while the render waits; stopping cancels the Reads and the recursive Get', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'read-ahead-'))
  try {
    const { store, root: node } = await stored(makeMibFiles(root))
    const { source, seen } = watched(store)
    const ahead = readAhead(source, node)
    const it = renderNar(node, ahead.reader)[Symbol.asyncIterator]()
    await it.next()
    // Let the walk run as far as it may while nobody reads.
    for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r))
    assert.ok(seen.opens <= 8 + 9, `${seen.opens} files of 1 MiB fetched ahead of a render at its first piece`)
    await it.return(undefined)
    ahead.stop()
    assert.ok(seen.signals.length > 0 && seen.signals.every((s) => s.aborted), 'a Read fetched ahead was not cancelled')
    const opens = seen.opens
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
    assert.equal(seen.opens, opens, 'Reads went on after the stop')
    assert.ok(seen.closureDone, 'the recursive Get was left open')
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})

/** `count` files in `dir` named `prefix`00…, each `size` seeded bytes (`seed` + i), or copies of `from`'s when given. */
function writeFiles(dir: string, prefix: string, count: number, size: number, seed: number, from?: string): void {
  fs.mkdirSync(dir, { recursive: true })
  for (let i = 0; i < count; i++) {
    const name = (p: string) => path.join(dir, `${p}${String(i).padStart(2, '0')}`)
    fs.writeFileSync(name(prefix), from ? fs.readFileSync(name(from)) : randomBytes(size, seed + i))
  }
}

test('copies of one content share one Read and empty files need none; the NAR is nix-store --dump\'s', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'read-ahead-'))
  try {
    // 10 contents, each in three files, and 10 empty files; all within what the walk queues ahead.
    const dir = path.join(root, 'copies')
    writeFiles(dir, 'a', 10, 3000, 500)
    writeFiles(dir, 'b', 10, 0, 0, 'a')
    writeFiles(dir, 'c', 10, 0, 0, 'a')
    writeFiles(dir, 'e', 10, 0, 0)
    // Copies share a fetch while one of them is queued: the walk runs ahead of the render here.
    const seen = await renderedAhead(t, dir, 20)
    assert.equal(seen.opens, 10, `${seen.opens} Reads for 10 distinct non-empty contents in 40 files`)
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})

test('bytes fetched for a file and kept for a later copy of it still count against the byte bound', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'read-ahead-'))
  try {
    // NAR order: a00…a05 (1 MiB each), b00…b05 (copies of the a's), c00…c09 (1 MiB each, distinct).
    const dir = path.join(root, 'shared-mib')
    writeFiles(dir, 'a', 6, 1 << 20, 900)
    writeFiles(dir, 'b', 6, 0, 0, 'a')
    writeFiles(dir, 'c', 10, 1 << 20, 950)
    const { store, root: node } = await stored(dir)
    const { source, seen } = watched(store)
    const ahead = readAhead(source, node)
    // The walk runs ahead of the render (which waits on its output): the b's share the a's fetches.
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
    const it = renderNar(node, ahead.reader)[Symbol.asyncIterator]()
    // Render the a's (6 MiB of contents and their headers), not yet the b's.
    let out = 0
    while (out < 6 << 20) {
      const r = await it.next()
      assert.ok(!r.done)
      out += r.value.length
    }
    // Let the walk fetch as far as it may while nobody reads.
    for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r))
    // Held now: the a's bytes, which the b's still need, and the c's fetched ahead.
    const cDigests = new Set(fs.readdirSync(dir).filter((n) => n.startsWith('c')).map((n) => toHex(b3(fs.readFileSync(path.join(dir, n))))))
    const cFetched = seen.opened.filter((h) => cDigests.has(h)).length
    assert.equal(seen.opened.length - cFetched, 6, 'the copies were fetched again')
    assert.ok(6 + cFetched <= 9, `${6 + cFetched} MiB held ahead of the render (the bound is 8 MiB, plus the file that crosses it)`)
    await it.return(undefined)
    ahead.stop()
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})

/** Per readMany call of a test source: how many blobs it can take, the bytes they may have, how many calls at once. */
const LIMITS = { blobs: 16, bytes: 48 * 1024, calls: 2 }

/**
 * `store` as a source that reads small blobs in batches (readMany, as a
 * daemon with batches) and gives its closure encoded, recording each call and the calls in flight; a
 * call fails at `failOn` (those before it handed out) and says `absent`
 * is absent, as the gRPC client's batches do.
 */
function batched(store: TreeSource, odd: { failOn?: B3Digest; absent?: B3Digest } = {}) {
  const seen = { calls: [] as Array<{ blobs: number; bytes: number }>, inFlight: 0, maxInFlight: 0, asked: [] as string[], opens: 0 }
  const source: TreeSource = {
    directories: {
      ...store.directories,
      // Left encoded, as a daemon's recursive Get is read: the walk decodes each.
      getClosureEncoded: async function* (root, o) {
        for await (const d of store.directories.getClosure(root, o)) yield { digest: directoryDigest(d), bytes: encodeDirectory(d) }
      },
    },
    blobs: {
      open: (d, o) => {
        seen.opens++
        return store.blobs.open(d, o)
      },
      readManyLimits: LIMITS,
      readMany: async (items, each, o) => {
        seen.calls.push({ blobs: items.length, bytes: items.reduce((n, it) => n + it.maxBytes, 0) })
        seen.maxInFlight = Math.max(seen.maxInFlight, ++seen.inFlight)
        try {
          // A turn of the event loop, as a round trip would take.
          await new Promise((r) => setImmediate(r))
          for (const [i, { digest, maxBytes }] of items.entries()) {
            seen.asked.push(toHex(digest))
            if (odd.failOn && bytesEqual(digest, odd.failOn)) throw new IntegrityError('blob is corrupt (test)')
            const src = odd.absent && bytesEqual(digest, odd.absent) ? undefined : await store.blobs.open(digest, o)
            const data = src && (await readAll(src))
            each(i, data && data.length > maxBytes ? LARGER : data)
          }
        } finally {
          seen.inFlight--
        }
      },
    },
  }
  return { source, seen }
}

test('read in batches (readMany): the NAR is nix-store --dump\'s, each call within the limits, calls overlapped and bounded', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'read-ahead-'))
  try {
    const dir = makeMixedTree(root)
    const { store, root: node } = await stored(dir)
    const { source, seen } = batched(store)
    const ahead = readAhead(source, node)
    const nar = await readAll(renderNar(node, ahead.reader))
    ahead.stop()
    const want = nixMissing() ? await readAll(renderNar(node, store)) : NixStore.dump(dir)
    if (nixMissing()) t.diagnostic(`compared with a plain render: ${nixMissing()}`)
    assert.ok(nar.equals(want), 'NAR bytes differ')
    assert.ok(seen.calls.length > 10, `${seen.calls.length} batch calls`)
    for (const c of seen.calls) assert.ok(c.blobs <= LIMITS.blobs && (c.blobs === 1 || c.bytes <= LIMITS.bytes), `a call of ${c.blobs} blobs, ${c.bytes} bytes`)
    assert.equal(seen.maxInFlight, LIMITS.calls, `at most ${seen.maxInFlight} calls in flight`)
    // The files over 1 MiB stream on their own: the 3 MiB one and the one of 1 MiB + 1 byte.
    assert.equal(seen.opens, 2, `${seen.opens} files read outside the batches`)
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})

test('read in batches: copies of one content are asked for once', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'read-ahead-'))
  try {
    const dir = path.join(root, 'copies')
    writeFiles(dir, 'a', 10, 3000, 500)
    writeFiles(dir, 'b', 10, 0, 0, 'a')
    writeFiles(dir, 'e', 10, 0, 0)
    const { store, root: node } = await stored(dir)
    const { source, seen } = batched(store)
    const ahead = readAhead(source, node)
    await readAll(renderNar(node, ahead.reader))
    ahead.stop()
    assert.equal(seen.asked.length, 10, `${seen.asked.length} blobs asked for 10 distinct non-empty contents in 30 files`)
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})

for (const odd of ['failOn', 'absent'] as const) {
  test(`read in batches, a blob ${odd === 'failOn' ? 'that fails its check' : 'absent'} mid-batch: the same bytes out as without read-ahead, then the same one error`, async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'read-ahead-'))
    try {
      const dir = makeMixedTree(root)
      const { store, root: node } = await stored(dir)
      const dirNode = (await store.directories.get((node as Extract<Node, { kind: 'directory' }>).digest))!
      const victim = dirNode.files.find((f) => f.name.toString() >= 'f1000' && f.size > 32)!
      // Without read-ahead: the store itself fails (or lacks) the blob.
      const plainSource = watched(store, odd === 'failOn' ? victim.digest : undefined).source
      if (odd === 'absent') plainSource.blobs.open = async (d) => (bytesEqual(d, victim.digest) ? undefined : store.blobs.open(d))
      const plain = await renderUntilFailure(node, plainSource)
      const { source, seen } = batched(store, { [odd]: victim.digest })
      const ahead = readAhead(source, node)
      const got = await renderUntilFailure(node, ahead.reader)
      ahead.stop()
      assert.ok(seen.asked.includes(toHex(victim.digest)))
      assert.match(String(got.error), odd === 'failOn' ? /corrupt \(test\)/ : /is missing from the store/)
      assert.equal(String(got.error), String(plain.error))
      assert.ok(got.out.length > 0 && got.out.equals(plain.out), `${got.out.length} bytes out before the failure, ${plain.out.length} without read-ahead`)
    } finally {
      fs.rmSync(root, { recursive: true, force: true })
    }
  })
}

test('a Directory left encoded is validated when decoded: one out of order fails the render there, with the reason', async () => {
  const file = (name: string) => ({ kind: 'file' as const, name: Buffer.from(name), digest: b3(Buffer.from('x')), size: 1, executable: false })
  const bad: Directory = { directories: [], files: [file('b'), file('a')], symlinks: [] }
  const top: Directory = { directories: [{ kind: 'directory', name: Buffer.from('sub'), digest: directoryDigest(bad), size: 2 }], files: [file('a')], symlinks: [] }
  const node: Node = { kind: 'directory', name: Buffer.alloc(0), digest: directoryDigest(top), size: 4 }
  const source: TreeSource = {
    directories: {
      get: async () => undefined,
      getClosure: () => (async function* () {})(),
      getClosureEncoded: async function* () {
        for (const d of [top, bad]) yield { digest: directoryDigest(d), bytes: encodeDirectory(d) }
      },
    },
    blobs: { open: async () => (async function* () { yield Buffer.from('x') })() },
  }
  const ahead = readAhead(source, node)
  const got = await renderUntilFailure(node, ahead.reader)
  ahead.stop()
  assert.match(String(got.error), /not sorted or duplicated/)
})
