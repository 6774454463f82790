/**
 * The binary cache's /metrics (Prometheus text format, counting what was
 * asked) and its failure log (one line per failed request: reads only on
 * 5xx, uploads on any 4xx; never credentials).
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { after, before, describe, test } from 'node:test'
import { importNar } from '../../src/ops/import-nar.js'
import { type HttpCache, type TcpAddress, startHttpCache } from '../../src/http/server.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { Store } from '../../src/store/store.js'
import { memoryStore } from '../helpers/ops.js'

const LOOPBACK: TcpAddress = { kind: 'tcp', host: '127.0.0.1', port: 0 }

/** A NAR of one regular file of `n` bytes (SPEC 5), built by hand; 32 MiB is more than loopback socket buffers hold, so a paused client keeps its render in flight. */
function fileNar(n: number): Buffer {
  const tok = (s: string | Buffer) => {
    const b = Buffer.isBuffer(s) ? s : Buffer.from(s)
    const len = Buffer.alloc(8)
    len.writeUInt32LE(b.length)
    return Buffer.concat([len, b, Buffer.alloc((8 - (b.length % 8)) % 8)])
  }
  return Buffer.concat(['nix-archive-1', '(', 'type', 'regular', 'contents'].map(tok).concat([tok(Buffer.alloc(n, 7)), tok(')')]))
}

/** Samples of a scrape by `name{labels}`, checking the text format on the way. */
function parseExposition(text: string): Map<string, number> {
  assert.ok(text.endsWith('\n'), 'the exposition ends in a newline')
  const samples = new Map<string, number>()
  const typed = new Map<string, string>()
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line)
    if (meta) {
      if (meta[1] === 'TYPE') {
        assert.match(meta[3]!, /^(counter|gauge)$/)
        if (meta[3] === 'counter') assert.match(meta[2]!, /_total$/, 'a counter ends in _total')
        typed.set(meta[2]!, meta[3]!)
      }
      continue
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)$/.exec(line)
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`)
    assert.ok(typed.has(m[1]!), `${m[1]} has no # TYPE before its samples`)
    samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]))
  }
  return samples
}

describe('HTTP binary cache: /metrics and the failure log', () => {
  let store: Store
  let cache: HttpCache
  let hash: string
  let narUrl: string
  const logs: string[] = []
  /** pathInfos.get of this hash part fails, as a broken store would. */
  const BROKEN = '1'.repeat(32)

  before(async () => {
    store = await memoryStore()
    const imported = await importNar(store, (async function* () {
      yield fileNar(32 << 20)
    })(), 'metrics-file')
    hash = imported.storePath.split('/').at(-1)!.slice(0, 32)
    const pathInfos = new Proxy(store.pathInfos, {
      get: (t, k) =>
        k === 'get'
          ? async (digest: Uint8Array, o?: object) => {
              if (Buffer.from(digest).equals(Buffer.from(nixbase32.decode(BROKEN)))) throw new Error('the disk is on fire')
              return t.get(digest, o)
            }
          : (Reflect.get(t, k) as unknown),
    })
    const watched = new Proxy(store, { get: (t, k) => (k === 'pathInfos' ? pathInfos : (Reflect.get(t, k) as unknown)) })
    cache = await startHttpCache(watched, LOOPBACK, (l) => logs.push(l), { priority: 40 })
    narUrl = /^URL: (.*)$/m.exec(await (await fetch(`${cache.url}/${hash}.narinfo`)).text())![1]!
  })
  after(async () => {
    await cache.shutdown()
    await store.close()
  })

  const scrape = async () => {
    const r = await fetch(`${cache.url}/metrics`)
    assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8')
    return parseExposition(await r.text())
  }

  test('a scrape counts requests by method, route and status, bytes, narinfo hits and misses', async () => {
    const was = await scrape()
    const delta = (now: Map<string, number>, key: string) => (now.get(key) ?? 0) - (was.get(key) ?? 0)
    await (await fetch(`${cache.url}/nix-cache-info`)).text()
    await (await fetch(`${cache.url}/${hash}.narinfo`)).text()
    for (let i = 0; i < 2; i++) await (await fetch(`${cache.url}/${'0'.repeat(31)}a.narinfo`)).text()
    const nar = Buffer.from(await (await fetch(`${cache.url}/${narUrl}`)).arrayBuffer())
    const part = await fetch(`${cache.url}/${narUrl}`, { headers: { Range: 'bytes=1000-' } })
    assert.equal(part.status, 206)
    assert.equal((await part.arrayBuffer()).byteLength, nar.length - 1000)
    await (await fetch(`${cache.url}/${narUrl}`, { method: 'HEAD' })).text()
    const now = await scrape()
    const req = (method: string, route: string, status: number) => delta(now, `tvix_http_requests_total{method="${method}",route="${route}",status="${status}"}`)
    assert.deepEqual(
      [req('GET', 'nix-cache-info', 200), req('GET', 'narinfo', 200), req('GET', 'narinfo', 404), req('GET', 'nar', 200), req('GET', 'nar', 206), req('HEAD', 'nar', 200), req('GET', 'metrics', 200)],
      [1, 1, 2, 1, 1, 1, 1],
    )
    assert.equal(delta(now, 'tvix_http_response_bytes_total{route="nar"}'), nar.length + nar.length - 1000)
    assert.equal(delta(now, 'tvix_http_narinfo_hits_total'), 1)
    assert.equal(delta(now, 'tvix_http_narinfo_misses_total'), 2)
    assert.equal(now.get('tvix_http_nar_renders_in_flight'), 0)
    assert.ok(now.has('tvix_http_uploads_total'))
  })

  test('a NAR being sent is a render in flight until its client goes away', async () => {
    const res = await new Promise<http.IncomingMessage>((resolve) => http.get(`${cache.url}/${narUrl}`, resolve))
    res.pause()
    assert.equal((await scrape()).get('tvix_http_nar_renders_in_flight'), 1)
    const closed = new Promise((resolve) => res.once('close', resolve))
    res.destroy()
    await closed
    // The server sees the close after the client: a later scrape, asked for until it does.
    for (;;) {
      if ((await scrape()).get('tvix_http_nar_renders_in_flight') === 0) break
      await new Promise((r) => setImmediate(r))
    }
  })

  test('one log line per failed upload and per server failure; a read\'s 404 is not logged; no credentials', async () => {
    logs.length = 0
    const secret = 'hunter2'
    const auth = { Authorization: `Basic ${Buffer.from(`alice:${secret}`).toString('base64')}` }
    assert.equal((await fetch(`${cache.url}/${'0'.repeat(31)}a.narinfo`, { headers: auth })).status, 404)
    assert.equal((await fetch(`${cache.url}/nar/nothing.nar?token=${secret}`, { headers: auth })).status, 404)
    assert.equal((await fetch(`${cache.url}/${hash}.narinfo?token=${secret}`, { method: 'PUT', headers: auth, body: 'x' })).status, 403)
    assert.equal((await fetch(`${cache.url}/${BROKEN}.narinfo`, { headers: auth })).status, 500)
    assert.equal((await fetch(`${cache.url}/${narUrl}`, { headers: { Range: 'bytes=99999999-' } })).status, 416)
    assert.deepEqual(logs, [`PUT /${hash}.narinfo 403: this binary cache is read-only`, `GET /${BROKEN}.narinfo 500: the disk is on fire`])
  })
})
