/**
 * The HTTP binary cache in-process, over a memory store: a NAR render
 * stops when its client goes away and when the server shuts down, and
 * neither is logged as a failure; one the store fails mid-way is cut
 * short and logged. Observed through the store: the blob stream the
 * render reads is left early, never read to its end.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { BlobService } from '../../src/castore/blob-service.js'
import { type HttpCache, type TcpAddress, startHttpCache } from '../../src/http/server.js'
import { importPath } from '../../src/ops/import-paths.js'
import type { Store } from '../../src/store/store.js'
import { memoryStore } from '../helpers/ops.js'

/** Far more than socket buffers hold: a render whose client stops reading is held long before its end. */
const FILE_BYTES = 48 << 20
/** A shutdown that waited this long was not what stopped the render: the force-close after the grace time was. */
const GRACE_MS = 5 * 60_000

const LOOPBACK: TcpAddress = { kind: 'tcp', host: '127.0.0.1', port: 0 }

/** How the render's one blob read ended. */
interface BlobRead {
  signal?: AbortSignal
  /** Read to its end: the whole NAR was rendered. */
  exhausted: boolean
  ended: Promise<void>
}

/** `store` with blobs.open watched: each read is recorded in `reads` as it starts. */
function watched(store: Store, reads: BlobRead[]): Store {
  const open: BlobService['open'] = async (digest, o) => {
    const blob = await store.blobs.open(digest, o)
    if (!blob) return blob
    let ended!: () => void
    const read: BlobRead = { signal: o?.signal, exhausted: false, ended: new Promise((r) => (ended = r)) }
    reads.push(read)
    return (async function* () {
      try {
        yield* blob
        read.exhausted = true
      } finally {
        ended()
      }
    })()
  }
  const blobs = new Proxy(store.blobs, { get: (t, k) => (k === 'open' ? open : (Reflect.get(t, k) as unknown)) })
  return new Proxy(store, { get: (t, k) => (k === 'blobs' ? blobs : (Reflect.get(t, k) as unknown)) })
}

/** Starts a GET of the path's NAR; calls `onData` with the response at its first bytes. */
async function startNarDownload(cache: HttpCache, storePath: string, onData: (req: http.ClientRequest, res: http.IncomingMessage) => void): Promise<void> {
  const narinfo = await (await fetch(`${cache.url}/${path.basename(storePath).slice(0, 32)}.narinfo`)).text()
  const url = /^URL: (.*)$/m.exec(narinfo)![1]!
  const req = http.get(`${cache.url}/${url}`)
  req.on('error', () => {})
  req.on('response', (res) => {
    res.on('error', () => {})
    res.once('data', () => onData(req, res))
  })
}

describe('HTTP binary cache: how a NAR render ends', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-http-'))
  let store: Store
  let storePath: string

  before(async () => {
    fs.writeFileSync(path.join(root, 'big'), Buffer.alloc(FILE_BYTES, 'tvix'))
    store = await memoryStore()
    storePath = (await importPath(store, path.join(root, 'big'))).storePath
  })
  after(async () => {
    await store.close()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test('a client that goes away mid-NAR stops the render, unlogged', async () => {
    const reads: BlobRead[] = []
    const logs: string[] = []
    const cache = await startHttpCache(watched(store, reads), LOOPBACK, (l) => logs.push(l), { priority: 40 })
    try {
      // The client's first bytes came from the blob, so the render has begun reading it.
      await new Promise<void>((resolve) =>
        startNarDownload(cache, storePath, (req) => {
          req.destroy()
          resolve()
        }),
      )
      const [read] = reads
      assert.ok(read, 'the render read the blob')
      await read.ended
      assert.equal(read.exhausted, false, 'the render went on to the end of the NAR')
      assert.ok(read.signal?.aborted, 'the blob read was not given a signal that aborted')
      assert.deepEqual(logs, [])
    } finally {
      await cache.shutdown()
    }
  })

  test('shutdown stops a render whose client stopped reading, without waiting for the grace time', async () => {
    const reads: BlobRead[] = []
    const logs: string[] = []
    const cache = await startHttpCache(watched(store, reads), LOOPBACK, (l) => logs.push(l), { priority: 40 })
    let client!: http.IncomingMessage
    await new Promise<void>((resolve) =>
      startNarDownload(cache, storePath, (_req, res) => {
        client = res
        res.pause()
        resolve()
      }),
    )
    const started = Date.now()
    await cache.shutdown(GRACE_MS)
    assert.ok(Date.now() - started < GRACE_MS, 'shutdown waited for the grace time')
    await reads[0]!.ended
    assert.equal(reads[0]!.exhausted, false)
    assert.deepEqual(logs, [])
    client.destroy()
  })

  test('a blob missing from the store: the NAR response is cut short, never completed, and logged once', async () => {
    const logs: string[] = []
    const blobs = new Proxy(store.blobs, { get: (t, k) => (k === 'open' ? async () => undefined : (Reflect.get(t, k) as unknown)) })
    const broken = new Proxy(store, { get: (t, k) => (k === 'blobs' ? blobs : (Reflect.get(t, k) as unknown)) })
    const cache = await startHttpCache(broken, LOOPBACK, (l) => logs.push(l), { priority: 40 })
    try {
      const narinfo = await (await fetch(`${cache.url}/${path.basename(storePath).slice(0, 32)}.narinfo`)).text()
      // Cut before or after the status line went out (the headers wait for the first bytes): never a whole body.
      const outcome = await new Promise<string>((resolve) => {
        http
          .get(`${cache.url}/${/^URL: (.*)$/m.exec(narinfo)![1]}`, (res) => {
            res.on('error', () => {})
            res.resume()
            res.once('close', () => resolve(res.complete ? 'complete' : 'cut short'))
          })
          .on('error', () => resolve('cut short'))
      })
      assert.equal(outcome, 'cut short')
      assert.equal(logs.length, 1, logs.join('\n'))
      assert.match(logs[0]!, /^GET \/nar\/\S+ failed mid-NAR: blob \S+ is missing from the store$/)
    } finally {
      await cache.shutdown()
    }
  })
})
