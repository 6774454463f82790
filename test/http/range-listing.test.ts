/**
 * The two things the binary cache makes from the castore without
 * rendering a whole NAR, checked against real Nix: the NAR from an offset
 * (HTTP Range) against `nix-store --dump`, and `<hash>.ls` against the
 * listing `nix copy --to file://…?write-nar-listing=true` writes.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { BlobService } from '../../src/castore/blob-service.js'
import { narListing } from '../../src/store/nar/listing.js'
import { byteRange, narBytes } from '../../src/http/range.js'
import { importPath } from '../../src/ops/import-paths.js'
import type { Store } from '../../src/store/store.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { memoryStore } from '../helpers/ops.js'
import { TREES, makeTree, randomBytes } from '../helpers/trees.js'

test('byteRange: the one range of a Range header, or the whole body, or unsatisfiable', () => {
  const size = 1000
  const cases: Array<[string | undefined, ReturnType<typeof byteRange>]> = [
    [undefined, undefined],
    ['bytes=0-', { start: 0, end: 999 }],
    ['bytes=400-', { start: 400, end: 999 }],
    ['bytes=400-499', { start: 400, end: 499 }],
    ['bytes=999-999', { start: 999, end: 999 }],
    // An end past the body is cut to it; a suffix longer than the body is all of it.
    ['bytes=400-5000', { start: 400, end: 999 }],
    ['bytes=-100', { start: 900, end: 999 }],
    ['bytes=-5000', { start: 0, end: 999 }],
    ['bytes=1000-', 'unsatisfiable'],
    ['bytes=1000-2000', 'unsatisfiable'],
    ['bytes=-0', 'unsatisfiable'],
    // What we answer with the whole body (RFC 9110 lets a server ignore a Range).
    ['bytes=500-400', undefined],
    ['bytes=-', undefined],
    ['bytes=0-1,5-6', undefined],
    ['items=0-1', undefined],
    ['bytes=x-', undefined],
  ]
  for (const [header, want] of cases) assert.deepEqual(byteRange(header, size), want, String(header))
})

const skip = nixMissing()
if (skip) console.log(`skipping the Range and .ls comparisons with Nix: ${skip}`)

describe('NAR ranges and listings against real Nix', { skip }, () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-range-'))
  const nix = new NixStore(path.join(root, 'nix'))
  const kinds = Object.keys(TREES).filter((k) => k !== 'big-file' && k !== 'deep')
  let store: Store
  /** Blobs opened by renders, by the store watched below. */
  let opened = 0

  before(async () => {
    const inner = await memoryStore()
    const open: BlobService['open'] = (d, o) => {
      opened++
      return inner.blobs.open(d, o)
    }
    const blobs = new Proxy(inner.blobs, { get: (t, k) => (k === 'open' ? open : (Reflect.get(t, k) as unknown)) })
    store = new Proxy(inner, { get: (t, k) => (k === 'blobs' ? blobs : (Reflect.get(t, k) as unknown)) })
  })
  after(async () => {
    await store.close()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test('the NAR from any offset is the tail of nix-store --dump, without reading the blobs before it', async () => {
    // Three files of a few hundred KiB: offsets inside each, at their edges, and in the framing between them.
    const tree = path.join(root, 'ranged')
    fs.mkdirSync(tree)
    for (const [i, n] of ['a', 'b', 'c'].entries()) fs.writeFileSync(path.join(tree, n), randomBytes(300_000 + i * 7, i))
    fs.symlinkSync('a', path.join(tree, 'link'))
    const dump = NixStore.dump(tree)
    const { info: pathInfo } = await importPath(store, tree)
    const offsets = JSON.parse(await text(narListing(pathInfo.node, store))).root.entries as Record<string, { narOffset?: number; size?: number }>
    const starts = [0, 1, 7, 8, 100, dump.length - 1]
    for (const e of Object.values(offsets)) if (e.narOffset !== undefined) starts.push(e.narOffset - 1, e.narOffset, e.narOffset + 1, e.narOffset + e.size! - 1, e.narOffset + e.size!, e.narOffset + e.size! + 8)
    for (const start of starts) {
      for (const end of [dump.length - 1, Math.min(dump.length - 1, start + 9), start]) {
        opened = 0
        const got = await collect(narBytes(pathInfo.node, store, { start, end }, new AbortController().signal))
        assert.ok(got.equals(dump.subarray(start, end + 1)), `bytes ${start}-${end}`)
        // Files are a, b, c in NAR order: those that end before `start` are not read.
        const before = Object.values(offsets).filter((e) => e.narOffset !== undefined && e.narOffset + e.size! <= start).length
        assert.ok(opened <= 3 - before, `bytes ${start}-${end}: ${opened} blobs opened, ${before} of them wholly before the range`)
      }
    }
  })

  test('<hash>.ls equals the listing Nix writes with write-nar-listing=true', async () => {
    const trees = kinds.map((k) => makeTree(path.join(root, 'trees'), k))
    const paths = nix.run('nix-store', ['--store', nix.url, '--add', ...trees]).toString().trim().split('\n')
    const cache = path.join(root, 'cache')
    nix.run('nix', ['copy', '--store', nix.url, '--to', `file://${cache}?write-nar-listing=true&compression=none`, ...paths])
    for (const [i, tree] of trees.entries()) {
      const { storePath, info: pathInfo } = await importPath(store, tree)
      assert.equal(storePath, paths[i])
      const nixLs = fs.readFileSync(path.join(cache, `${path.basename(storePath).slice(0, 32)}.ls`), 'utf8')
      const ours = await text(narListing(pathInfo.node, store))
      assert.deepEqual(JSON.parse(ours), JSON.parse(nixLs), kinds[i])
      // Same keys in the same order, too: byte for byte where names are plain.
      if (kinds[i] !== 'odd-names') assert.equal(ours, nixLs, kinds[i])
      // The NAR Nix wrote beside it, from each offset its listing names (and the byte before): our render's tail.
      const narinfo = fs.readFileSync(path.join(cache, `${path.basename(storePath).slice(0, 32)}.narinfo`), 'utf8')
      const nar = fs.readFileSync(path.join(cache, /^URL: (.*)$/m.exec(narinfo)![1]!))
      const starts = [...fileOffsets(JSON.parse(nixLs).root)].flatMap((o) => [o - 1, o]).filter((o) => o < nar.length)
      // A dozen spread over the NAR: each render walks the rest of the tree, and `wide` has thousands of files.
      const step = Math.ceil(starts.length / 12)
      for (const start of starts.filter((_, j) => j % step === 0 || j === starts.length - 1)) {
        const got = await collect(narBytes(pathInfo.node, store, { start, end: nar.length - 1 }, new AbortController().signal))
        assert.ok(got.equals(nar.subarray(start)), `${kinds[i]}: from ${start}`)
      }
    }
  })
})

type ListedNode = { type: string; narOffset?: number; entries?: Record<string, ListedNode> }

/** The narOffset of every regular file of a listing. */
function* fileOffsets(n: ListedNode): Generator<number> {
  if (n.narOffset !== undefined) yield n.narOffset
  for (const e of Object.values(n.entries ?? {})) yield* fileOffsets(e)
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const all: Uint8Array[] = []
  for await (const c of chunks) all.push(c)
  return Buffer.concat(all)
}

async function text(pieces: AsyncIterable<string>): Promise<string> {
  let s = ''
  for await (const p of pieces) s += p
  return s
}
