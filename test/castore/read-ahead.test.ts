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
import { test } from 'node:test'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { readAll } from '../../src/castore/blob-service.js'
import { type B3Digest, bytesEqual } from '../../src/castore/digest.js'
import type { Node } from '../../src/castore/node.js'
import { readAhead, type TreeSource } from '../../src/castore/read-ahead.js'
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
  const seen = { inFlight: 0, maxInFlight: 0, opens: 0, signals: [] as AbortSignal[], closureDone: false }
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

test('a tree read ahead renders the same NAR as nix-store --dump, with a bounded number of Reads in flight', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'read-ahead-'))
  try {
    const dir = makeMixedTree(root)
    const { store, root: node } = await stored(dir)
    const { source, seen } = watched(store)
    const ahead = readAhead(source, node)
    const nar = await readAll(renderNar(node, ahead.reader))
    ahead.stop()
    // The oracle: Nix's own NAR of the folder where Nix is installed, else our plain (uncached) render.
    const want = nixMissing() ? await readAll(renderNar(node, store)) : NixStore.dump(dir)
    if (nixMissing()) t.diagnostic(`compared with a plain render: ${nixMissing()}`)
    assert.ok(nar.equals(want), 'NAR bytes differ')
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
