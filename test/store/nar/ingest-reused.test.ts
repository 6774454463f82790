import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { type BlobStage, readAll } from '../../../src/castore/blob-service.js'
import { commitTreeStage, stageTree } from '../../../src/castore/tree-stage.js'
import { b3 } from '../../../src/castore/digest.js'
import { openLocalStore } from '../../../src/backends/local/index.js'
import { openMemoryStore } from '../../../src/backends/memory/index.js'
import { FileTransport } from '../../../src/backends/nix-cache/file-transport.js'
import type { Store } from '../../../src/store/store.js'
import { ingestNar } from '../../../src/store/nar/ingest.js'
import { renderNar } from '../../../src/store/nar/render.js'
import { randomBytes } from '../../helpers/trees.js'
import { directory, entry, nar, str, toks } from '../../helpers/nar.js'

const MiB = 1 << 20
const file = (contents: Uint8Array) => toks('(', 'type', 'regular', 'contents', str(contents), ')')

/** Small files (the ingest's whole-buffer path), a 3 MiB one (streamed, chunked into a pack) and a file of exactly 1 MiB + 1. */
function sampleNar(): Buffer {
  const small = Array.from({ length: 300 }, (_, i) => entry(`s${String(i).padStart(3, '0')}`, file(randomBytes(1 + ((i * 37) % 700), 0x5eed + i))))
  return nar(directory(entry('big', file(randomBytes(3 * MiB, 0xb16))), entry('edge', file(randomBytes(MiB + 1, 0xed9e))), entry('small', directory(...small))))
}

/**
 * `bytes` in pieces of `piece` bytes from one buffer it reuses, scribbled
 * over as soon as the next piece is asked for: a consumer that kept a view
 * of an earlier piece sees garbage.
 */
async function* reusingSource(bytes: Uint8Array, piece: number): AsyncGenerator<Uint8Array> {
  const buf = Buffer.alloc(piece)
  for (let at = 0; at < bytes.length; at += piece) {
    const n = Math.min(piece, bytes.length - at)
    buf.set(bytes.subarray(at, at + n))
    yield buf.subarray(0, n)
    buf.fill(0xa5)
  }
}

async function ingestAndRender(store: Store, src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const stage = stageTree(store)
  const r = await ingestNar(src, stage, { reusedBuffers: true })
  await commitTreeStage(stage)
  return Buffer.from(await readAll(renderNar(r.root, store)))
}

describe('NAR ingest from a source that reuses its buffers (reusedBuffers)', () => {
  const bytes = sampleNar()

  for (const piece of [MiB, 4096 + 3]) {
    test(`a local store keeps the very bytes, read in pieces of ${piece}`, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reused-'))
      const store = await openLocalStore(path.join(dir, 'store'))
      try {
        assert.ok((await ingestAndRender(store, reusingSource(bytes, piece))).equals(bytes))
      } finally {
        await store.close()
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  }

  test('a stage that keeps the pieces it is given (as an upload queue does) gets copies of them', async () => {
    const kept: Uint8Array[][] = []
    const stage: BlobStage = {
      async put(src) {
        const pieces: Uint8Array[] = []
        for await (const p of src instanceof Uint8Array ? [src] : src) pieces.push(p)
        kept.push(pieces)
        const digest = b3(Buffer.concat(pieces))
        return { digest, size: pieces.reduce((n, p) => n + p.length, 0) }
      },
      commit: async () => {},
      abort: async () => {},
    }
    await ingestNar(reusingSource(bytes, MiB), { blobs: stage, directories: openMemoryStore().directories.stage() }, { reusedBuffers: true })
    const files = kept.map((pieces) => Buffer.concat(pieces))
    assert.deepEqual(
      files.map((f) => f.length),
      [3 * MiB, MiB + 1, ...Array.from({ length: 300 }, (_, i) => 1 + ((i * 37) % 700))],
    )
    assert.ok(files[0]!.equals(randomBytes(3 * MiB, 0xb16)) && files[1]!.equals(randomBytes(MiB + 1, 0xed9e)))
    assert.ok(files.slice(2).every((f, i) => f.equals(randomBytes(1 + ((i * 37) % 700), 0x5eed + i))))
  })

  test("small files are offered to the stage's putNow with their BLAKE3 first; what it refuses is put, told the digest, with intact bytes", async () => {
    const offered: Array<{ data: Buffer; digest: Uint8Array }> = []
    const put: Array<{ data: Buffer; digest?: Uint8Array }> = []
    const stage: BlobStage = {
      // Takes files of even size (copying, as putNow must), refuses the others.
      putNow(data, digest) {
        offered.push({ data: Buffer.from(data), digest })
        return data.length % 2 === 0 ? { digest, size: data.length } : undefined
      },
      async put(src, opts) {
        // Read later, after the reader has moved on: a view of its buffer would be scribbled over by now.
        await new Promise((resolve) => setImmediate(resolve))
        const data = src instanceof Uint8Array ? Buffer.from(src) : await readAll(src as AsyncIterable<Uint8Array>)
        put.push({ data, digest: opts?.digest })
        return { digest: b3(data), size: data.length }
      },
      commit: async () => {},
      abort: async () => {},
    }
    const r = await ingestNar(reusingSource(bytes, 4096 + 3), { blobs: stage, directories: openMemoryStore().directories.stage() }, { reusedBuffers: true })
    const smallSizes = Array.from({ length: 300 }, (_, i) => 1 + ((i * 37) % 700))
    assert.deepEqual(offered.map((o) => o.data.length), smallSizes, 'every file of up to 1 MiB is offered, in NAR order; none larger')
    assert.ok(offered.every((o, i) => o.data.equals(randomBytes(smallSizes[i]!, 0x5eed + i)) && Buffer.from(o.digest).equals(b3(o.data))), 'with its bytes and their BLAKE3')
    const refused = smallSizes.map((size, i) => ({ size, i })).filter(({ size }) => size % 2 === 1)
    assert.deepEqual(put.map((p) => p.data.length), [3 * MiB, MiB + 1, ...refused.map(({ size }) => size)])
    assert.equal(put[0]!.digest, undefined, 'a streamed file is not told a digest')
    put.slice(2).forEach((p, k) => {
      const { size, i } = refused[k]!
      assert.ok(p.data.equals(randomBytes(size, 0x5eed + i)), `refused file s${i} intact`)
      assert.ok(p.digest && Buffer.from(p.digest).equals(b3(p.data)), `refused file s${i} put with its digest`)
    })
    assert.equal(r.narSize, bytes.length)
  })

  test("a cache folder's file read in reused buffers is the file, over several reads", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reused-'))
    try {
      fs.writeFileSync(path.join(dir, 'x.nar'), bytes)
      const f = await new FileTransport(dir).open('x.nar')
      assert.ok(f?.reusing)
      const pieces: Buffer[] = []
      try {
        for await (const p of f.reusing()) pieces.push(Buffer.from(p))
      } finally {
        f.body.destroy()
      }
      assert.ok(pieces.length > 2, `${pieces.length} reads`)
      assert.ok(Buffer.concat(pieces).equals(bytes))
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('NAR reader: the same result however the input is split (steps run again when the bytes run short)', () => {
  const tree = nar(
    directory(
      entry('a', file(Buffer.from('x'))),
      entry('bb', directory(entry('c', toks('(', 'type', 'symlink', 'target', str('../a'), ')')), entry('d', file(Buffer.from('hello'))))),
      entry('e', toks('(', 'type', 'regular', 'executable', '', 'contents', str('#!/bin/sh\n'), ')')),
    ),
  )
  const outOfOrder = nar(directory(entry('b', file(Buffer.from('x'))), entry('c', file(Buffer.from('y'))), entry('a', file(Buffer.from('z')))))

  test('every piece size from 1 to 96 bytes, in a reused buffer: the same tree and NAR hash', async () => {
    const store = openMemoryStore()
    const whole = await ingestNar(reusingSource(tree, tree.length), stageTree(store), { reusedBuffers: true })
    for (let piece = 1; piece <= 96; piece++) {
      const r = await ingestNar(reusingSource(tree, piece), stageTree(store), { reusedBuffers: true })
      assert.deepEqual(r, whole, `pieces of ${piece}`)
    }
  })

  test('every piece size from 1 to 96 bytes: an entry out of order is that error, never a false duplicate', async () => {
    for (let piece = 1; piece <= 96; piece++) {
      await assert.rejects(ingestNar(reusingSource(outOfOrder, piece), stageTree(openMemoryStore()), { reusedBuffers: true }), /entry "a" is out of order \(after "c"\)/, `pieces of ${piece}`)
    }
  })
})
