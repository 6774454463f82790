import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { openLocalStore } from '../../src/backends/local/index.js'
import { defaultStoreLocation, parseStoreUrl } from '../../src/backends/open-store.js'
import { readAll } from '../../src/castore/blob-service.js'
import { toHex } from '../../src/castore/digest.js'

// The service contracts run against every backend in test/contracts/matrix.test.ts.

describe('local store specifics', () => {
  const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-local-'))

  test('lays out objects by digest with a format marker, no temp files left', async () => {
    const root = path.join(tmp(), 's')
    const store = await openLocalStore(root)
    const { digest } = await store.blobs.put(Buffer.from('abc'))
    const hex = toHex(digest)
    assert.ok(fs.existsSync(path.join(root, 'blobs/b3', hex.slice(0, 2), hex)))
    assert.deepEqual(JSON.parse(fs.readFileSync(path.join(root, 'tvix-store.json'), 'utf8')), { format: 'tvix-store-local', version: 4 })
    assert.deepEqual(fs.readdirSync(path.join(root, 'tmp')), [])
  })

  test('a corrupted blob is detected on read', async () => {
    const root = path.join(tmp(), 's')
    const store = await openLocalStore(root)
    const { digest } = await store.blobs.put(Buffer.from('original content'))
    const file = path.join(root, 'blobs/b3', toHex(digest).slice(0, 2), toHex(digest))
    fs.chmodSync(file, 0o644)
    fs.writeFileSync(file, 'tampered content')
    await assert.rejects(async () => readAll((await store.blobs.open(digest))!), /corrupt/)
  })

  test('refuses a non-empty directory that is not a store, and a newer format', async () => {
    const d = tmp()
    fs.writeFileSync(path.join(d, 'unrelated'), 'x')
    await assert.rejects(openLocalStore(d), /not a tvix-store directory/)
    const e = tmp()
    fs.writeFileSync(path.join(e, 'tvix-store.json'), '{"format":"tvix-store-local","version":99}')
    await assert.rejects(openLocalStore(e), /unsupported format/)
  })

  test('opening a missing store for reading creates nothing', async () => {
    const root = path.join(tmp(), 'absent')
    const store = await openLocalStore(root)
    assert.equal(await store.pathInfos.get(new Uint8Array(20)), undefined)
    assert.equal(fs.existsSync(root), false)
  })
})

describe('store URLs', () => {
  test('parses every supported form', () => {
    assert.deepEqual(parseStoreUrl('/abs/dir'), { kind: 'local', path: '/abs/dir' })
    assert.deepEqual(parseStoreUrl('rel/dir'), { kind: 'local', path: path.resolve('rel/dir') })
    assert.deepEqual(parseStoreUrl('file:///abs/dir'), { kind: 'local', path: '/abs/dir' })
    assert.deepEqual(parseStoreUrl('memory://'), { kind: 'memory' })
    assert.deepEqual(parseStoreUrl('grpc+http://[::1]:8000'), { kind: 'grpc', target: '[::1]:8000', tls: false })
    assert.deepEqual(parseStoreUrl('grpc+https://host:443'), { kind: 'grpc', target: 'host:443', tls: true })
    assert.deepEqual(parseStoreUrl('grpc+unix:///run/tvix.sock'), { kind: 'grpc', target: 'unix:/run/tvix.sock', tls: false })
  })

  test('rejects malformed ones with a reason', () => {
    for (const [url, re] of [
      ['', /empty/],
      ['gopher://host', /unknown store URL scheme/],
      ['grpc+http://[::1]', /has no port/],
      ['file://host/x', /no host/],
      ['memory://x', /no host or path/],
      ['grpc+http://host:1/path', /no path/],
      ['grpc+unix://host/sock', /absolute/],
      ['file:///x#y', /query or fragment/],
    ] as const) {
      assert.throws(() => parseStoreUrl(url), re, url)
    }
  })

  test('default location follows XDG_DATA_HOME, else ~/.local/share', () => {
    assert.equal(defaultStoreLocation({ XDG_DATA_HOME: '/xdg' }), '/xdg/tvix-store')
    assert.equal(defaultStoreLocation({}), path.join(os.homedir(), '.local/share/tvix-store'))
  })
})
