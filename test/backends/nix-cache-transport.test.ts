/**
 * How a binary cache is read over HTTP, in-process (the e2e test covers
 * caches Nix wrote): what counts as absent, what is retried and what is
 * not, and an abort stopping a request, a retry wait and a body at once.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { HttpTransport } from '../../src/backends/nix-cache/http-transport.js'
import { TransientError, withRetries } from '../../src/backends/nix-cache/transport.js'
import { BackendError, NotFoundError } from '../../src/errors.js'
import { type FileCacheServer, startFileCacheServer } from '../helpers/file-cache-server.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cache-transport-'))
after(() => fs.rmSync(root, { recursive: true, force: true }))

describe('HttpTransport', () => {
  let server: FileCacheServer
  let transport: HttpTransport
  before(async () => {
    fs.writeFileSync(path.join(root, 'nix-cache-info'), 'StoreDir: /nix/store\n')
    server = await startFileCacheServer(root)
    // Below a path: relative names resolve under it, never beside it.
    transport = new HttpTransport(new URL(`${server.url}/`))
  })
  after(async () => {
    await transport?.close()
    await server?.close()
  })

  test('200 is the file and its size; 401, 403, 404 and 410 are absent, as Nix takes them', async () => {
    const file = await transport.open('nix-cache-info')
    let text = ''
    for await (const c of file!.body) text += c
    assert.deepEqual([text, file!.size], ['StoreDir: /nix/store\n', 21])
    assert.equal(await transport.open('absent.narinfo'), undefined)
    for (const status of [401, 403, 410]) {
      Object.assign(server.faults, { match: /nix-cache-info/, status, times: 1, dropAfter: undefined })
      assert.equal(await transport.open('nix-cache-info'), undefined, String(status))
    }
  })

  test('5xx, 408 and 429 may pass (TransientError); other statuses are failures at once', async () => {
    for (const status of [500, 503, 408, 429]) {
      Object.assign(server.faults, { match: /nix-cache-info/, status, times: 1 })
      await assert.rejects(transport.open('nix-cache-info'), (e) => e instanceof TransientError && /HTTP \d+ for http/.test(e.message), String(status))
    }
    Object.assign(server.faults, { match: /nix-cache-info/, status: 400, times: 1 })
    await assert.rejects(transport.open('nix-cache-info'), (e) => e instanceof BackendError && !(e instanceof TransientError))
  })

  test('a refused connection is transient', async () => {
    const closed = http.createServer()
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
    const port = (closed.address() as AddressInfo).port
    await new Promise((r) => closed.close(r))
    const t = new HttpTransport(new URL(`http://127.0.0.1:${port}/`))
    await assert.rejects(t.open('nix-cache-info'), TransientError)
    await t.close()
  })

  test('an abort stops a request the server never answers, at once', async () => {
    const sockets = new Set<import('node:net').Socket>()
    const silent = http.createServer(() => {})
    silent.on('connection', (s) => sockets.add(s))
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const t = new HttpTransport(new URL(`http://127.0.0.1:${(silent.address() as AddressInfo).port}/`))
    const ac = new AbortController()
    const pending = withRetries(() => t.open('x.narinfo', { signal: ac.signal }), { signal: ac.signal })
    setImmediate(() => ac.abort(new Error('interrupted')))
    await assert.rejects(pending, /interrupted/)
    await t.close()
    for (const s of sockets) s.destroy()
    await new Promise((r) => silent.close(r))
  })
})

describe('withRetries', () => {
  test('retries TransientErrors up to the attempts given, then fails with the last', async () => {
    let calls = 0
    await assert.rejects(
      withRetries(
        async () => {
          calls++
          throw new TransientError(`try ${calls}`)
        },
        { attempts: 3, baseDelayMs: 1 },
      ),
      /try 3/,
    )
    assert.equal(calls, 3)
  })

  test('a success after transient failures is the result; anything else fails at once', async () => {
    let calls = 0
    assert.equal(await withRetries(async () => (++calls < 3 ? Promise.reject(new TransientError('not yet')) : 'done'), { baseDelayMs: 1 }), 'done')
    calls = 0
    await assert.rejects(
      withRetries(async () => {
        calls++
        throw new NotFoundError('gone')
      }),
      NotFoundError,
    )
    assert.equal(calls, 1)
  })

  test('an abort during the wait between attempts ends it', async () => {
    const ac = new AbortController()
    const started = Date.now()
    const pending = withRetries(
      async () => {
        setImmediate(() => ac.abort(new Error('stop')))
        throw new TransientError('down')
      },
      { signal: ac.signal, baseDelayMs: 60_000 },
    )
    await assert.rejects(pending, /stop/)
    // The wait was a minute: it did not run out.
    assert.ok(Date.now() - started < 30_000)
  })
})

describe('binary cache URLs in the registry', () => {
  test('http(s)://, nix+http(s):// and nix+file:///abs name the nix-cache backend; a relative nix+file:// is refused', async () => {
    const { parseStoreUrl } = await import('../../src/backends/open-store.js')
    const kinds = ['http://h:5000/c', 'https://cache.nixos.org', 'nix+http://h', 'nix+https://h', 'nix+file:///srv/cache?compression=xz'].map((u) => parseStoreUrl(u).kind)
    assert.deepEqual(new Set(kinds), new Set(['nix-cache']))
    assert.throws(() => parseStoreUrl('nix+file://srv/cache'), /nix\+file:\/\/\/absolute\/dir/)
  })
})
