import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { openLocalStore } from '../../src/backends/local/index.js'
import { readAll } from '../../src/castore/blob-service.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { importPath } from '../../src/ops/import-paths.js'
import { randomBytes } from '../helpers/trees.js'

const fresh = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-pack-'))
const du = (dir: string): number => {
  let n = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    n += e.isDirectory() ? du(p) : fs.statSync(p).size
  }
  return n
}
const files = (dir: string): number =>
  fs.readdirSync(dir, { withFileTypes: true }).reduce((n, e) => n + (e.isDirectory() ? files(path.join(dir, e.name)) : 1), 0)

describe('large blobs as packs of content-defined chunks', () => {
  test('a large blob is one pack file, reads back whole, lists its chunks', async () => {
    const root = fresh()
    const store = await openLocalStore(root)
    const data = randomBytes(5 << 20, 1)
    const { digest } = await store.blobs.put(data)
    const hex = toHex(digest)
    assert.ok(fs.existsSync(path.join(root, 'blobs/b3', hex.slice(0, 2), `${hex}.pack`)))
    assert.deepEqual(await readAll((await store.blobs.open(digest))!), data)
    const chunks = (await store.blobs.chunks!(digest))!
    assert.ok(chunks.length > 20, `${chunks.length} chunks`)
    assert.equal(chunks.reduce((n, c) => n + c.size, 0), data.length)
    // Each chunk is readable by its own digest.
    let off = 0
    for (const c of chunks.slice(0, 5)) {
      assert.deepEqual(await readAll((await store.blobs.open(c.digest))!), data.subarray(off, off + c.size))
      assert.ok(await store.blobs.has(c.digest))
      off += c.size
    }
    // A small blob is still a plain file, with no chunks.
    const small = await store.blobs.put(Buffer.from('small'))
    assert.deepEqual(await store.blobs.chunks!(small.digest), [])
  })

  test('a second version with a small edit costs only its new chunks; a new process dedups too', async () => {
    const root = fresh()
    const v1 = randomBytes(8 << 20, 2)
    const v2 = Buffer.from(v1)
    v2.write('an edit in the middle of the file', 4 << 20)
    await (await openLocalStore(root)).blobs.put(v1)
    const one = du(path.join(root, 'blobs'))
    // Another store object: the chunk index is rebuilt from the packs on disk.
    const store = await openLocalStore(root)
    const { digest } = await store.blobs.put(v2)
    const two = du(path.join(root, 'blobs'))
    assert.ok(two < one * 1.1, `two versions use ${two} bytes, one uses ${one}`)
    assert.equal(files(path.join(root, 'blobs')), 2)
    assert.deepEqual(await readAll((await store.blobs.open(digest))!), v2)
    assert.equal(toHex(digest), toHex(b3(v2)))
  })

  test('an import of small files reads none of the packs a store holds; a chunk is still found by its digest', async () => {
    const root = fresh()
    const { digest: large } = await (await openLocalStore(root)).blobs.put(randomBytes(3 << 20, 5))
    // Another store object, as in a new process: its chunk index (every pack's manifest) is not loaded yet.
    const store = await openLocalStore(root)
    const src = path.join(fresh(), 'tree')
    fs.mkdirSync(src)
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, `f${i}`), `small file ${i}\n`)
    const { storePath } = await importPath(store, src)
    assert.ok(storePath.endsWith('-tree'))
    assert.equal(store.objects.chunks.isLoaded, false, 'the import loaded the chunk index')
    // A blob stored only as a chunk of that pack: has() and open() still find it, loading the index then.
    const [chunk] = (await store.blobs.chunks!(large))!
    const other = await openLocalStore(root)
    assert.ok(await other.blobs.has(chunk!.digest))
    assert.equal(toHex(b3(await readAll((await other.blobs.open(chunk!.digest))!))), toHex(chunk!.digest))
  })

  test('compressible data is stored compressed, incompressible data as is', async () => {
    const root = fresh()
    const store = await openLocalStore(root)
    const text = Buffer.from('a line of very compressible text that repeats\n'.repeat(100_000))
    const { digest } = await store.blobs.put(text)
    assert.ok(du(path.join(root, 'blobs')) < text.length / 5)
    assert.deepEqual(await readAll((await store.blobs.open(digest))!), text)
  })

  test('a corrupt pack is detected on read', async () => {
    const root = fresh()
    const store = await openLocalStore(root)
    const data = randomBytes(3 << 20, 3)
    const { digest } = await store.blobs.put(data)
    const file = path.join(root, 'blobs/b3', toHex(digest).slice(0, 2), `${toHex(digest)}.pack`)
    fs.chmodSync(file, 0o644)
    const fd = fs.openSync(file, 'r+')
    fs.writeSync(fd, Buffer.from('XXXX'), 0, 4, 1000)
    fs.closeSync(fd)
    await assert.rejects(async () => readAll((await store.blobs.open(digest))!), /corrupt/)
  })

  test('a version 1 store is read as is and upgraded by its first write', async () => {
    const root = fresh()
    const store = await openLocalStore(root)
    await store.blobs.put(Buffer.from('v1 content'))
    fs.writeFileSync(path.join(root, 'tvix-store.json'), '{"format":"tvix-store-local","version":1}\n')
    const again = await openLocalStore(root)
    assert.ok(await again.blobs.has(b3(Buffer.from('v1 content'))))
    await again.blobs.put(randomBytes(2 << 20, 4))
    assert.equal(JSON.parse(fs.readFileSync(path.join(root, 'tvix-store.json'), 'utf8')).version, 4)
  })
})
