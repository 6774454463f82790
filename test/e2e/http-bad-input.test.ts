/**
 * The bad-input corpus on the HTTP side: a real daemon serving its store
 * as a binary cache with uploads (`--http-listen 127.0.0.1:0
 * --http-upload`), and requests written byte by byte over node:net:
 * malformed narinfos (each field wrong in turn), lying Content-Lengths,
 * chunked bodies and NARs that end early or never end, path traversal and
 * odd URLs, oversized and too many headers. Each answers a 4xx (never a
 * 5xx: Nix 2.8 hangs on a 5xx answer to a PUT), or closes a connection
 * whose client went away; after each the daemon serves a good request, the
 * store holds what it held, and no temp file is left.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import * as nixbase32 from '../../src/store/nixbase32.js'
import { eventually } from '../helpers/attack.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { directory, entry, nar, regular, toks } from '../helpers/nar.js'
import { RawHttp, type RawResponse, rawRequest } from '../helpers/raw-http.js'
import { snapshot, tempFiles } from '../helpers/snapshot.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-http-bad-input-'))
const store = path.join(root, 'store')
/** --max-nar-size for the daemon: small, so a NAR over it is cheap to send. */
const MAX_NAR = 64 * 1024

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest()
const nb32 = (b: Uint8Array) => nixbase32.encode(b)
/** A store path basename with a made-up hash part. */
const storeName = (name: string) => `${nb32(sha256(Buffer.from(name)).subarray(0, 20))}-${name}`
const hashPart = (base: string) => base.slice(0, 32)

/** Two NARs: SEED is published first; VICTIM is uploaded, and its narinfo sent only after every malformed one. */
const SEED = { nar: nar(directory(entry('a', regular('seed\n')))), base: storeName('seed') }
const VICTIM = { nar: nar(directory(entry('b', regular('victim\n', true)), entry('c', regular('')))), base: storeName('victim') }
const narUrl = (n: Buffer) => `nar/${nb32(sha256(n))}.nar`

/** The narinfo `nix copy --to http://…?compression=none` writes, with `edit` applied to its lines. */
function narinfo(p: { nar: Buffer; base: string }, edit: (lines: string[]) => string[] = (l) => l): string {
  const hash = `sha256:${nb32(sha256(p.nar))}`
  const lines = [`StorePath: /nix/store/${p.base}`, `URL: ${narUrl(p.nar)}`, 'Compression: none', `FileHash: ${hash}`, `FileSize: ${p.nar.length}`, `NarHash: ${hash}`, `NarSize: ${p.nar.length}`, 'References: ']
  return `${edit(lines).join('\n')}\n`
}

/** `lines` with the line starting `key:` replaced by `line` (or dropped when undefined). */
const replace = (key: string, line?: string) => (lines: string[]) => lines.flatMap((l) => (l.startsWith(`${key}:`) ? (line === undefined ? [] : [line]) : [l]))

function put(url: string, body: string | Uint8Array, headers: string[] = []): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'latin1') : Buffer.from(body)
  return Buffer.concat([Buffer.from(`PUT ${url} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: ${b.length}\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`, 'latin1'), b])
}
const putNarInfo = (p: { base: string }, text: string | Uint8Array) => put(`/${hashPart(p.base)}.narinfo`, text)
const get = (url: string, headers: string[] = []) => `GET ${url} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`

let daemon: RunningDaemon
let port: number

/** One request on its own connection; a 5xx fails the case whatever it expected. */
async function send(request: string | Uint8Array): Promise<RawResponse> {
  const r = await rawRequest(port, request)
  assert.ok(r.status === undefined || r.status < 500, `a 5xx: ${r.raw.slice(0, 300)}`)
  return r
}

/** The daemon still serves: its nix-cache-info, and the seed's narinfo and NAR. */
async function assertServes(): Promise<void> {
  assert.equal((await send(get('/nix-cache-info'))).status, 200)
  const info = await send(get(`/${hashPart(SEED.base)}.narinfo`))
  assert.equal(info.status, 200, info.raw)
  assert.match(info.raw, new RegExp(`NarHash: sha256:${nb32(sha256(SEED.nar))}\n`))
  const url = /\nURL: (\S+)\n/.exec(info.raw)![1]!
  const n = await send(get(`/${url}`))
  assert.equal(n.status, 200)
  assert.ok(Buffer.from(n.raw.slice(n.raw.indexOf('\r\n\r\n') + 4), 'latin1').equals(SEED.nar), 'the seed NAR comes back whole')
}

/** Runs `fn` and checks what every case must leave: a serving daemon, the same store, no temp files. */
async function unchanged(fn: () => Promise<void>): Promise<void> {
  const before = snapshot(store)
  await fn()
  // A client that went away mid-upload: its stage is removed once the daemon sees the close.
  assert.ok(await eventually(() => tempFiles(store).length === 0, 60_000), `temp files left: ${tempFiles(store).join(', ')}`)
  await assertServes()
  assert.deepEqual(snapshot(store), before, 'the store changed')
}

type Want = number | 'closed'
interface Case {
  name: string
  request: string | Buffer
  want: Want
}

/** Each field of the victim's narinfo wrong in turn (its NAR is uploaded and pending, so only the narinfo is at fault). */
const NARINFO_CASES: Case[] = [
  ['StorePath missing', replace('StorePath')],
  ['StorePath of another path', replace('StorePath', `StorePath: /nix/store/${storeName('other')}`)],
  ['StorePath outside the store dir', replace('StorePath', `StorePath: /tmp/store/${VICTIM.base}`)],
  ['StorePath with a traversal', replace('StorePath', `StorePath: /nix/store/../../etc/${VICTIM.base}`)],
  ['StorePath with an invalid name', replace('StorePath', `StorePath: /nix/store/${hashPart(VICTIM.base)}-a b`)],
  ['URL missing', replace('URL')],
  ['URL of a NAR never uploaded', replace('URL', `URL: nar/${nb32(sha256(Buffer.from('x')))}.nar`)],
  ['URL with a traversal', replace('URL', 'URL: nar/../../../etc/passwd')],
  ['NarHash missing', replace('NarHash')],
  ['NarHash not a hash', replace('NarHash', 'NarHash: sha256:not-a-hash')],
  ['NarHash of other bytes', replace('NarHash', `NarHash: sha256:${nb32(sha256(SEED.nar))}`)],
  ['NarHash an md5', replace('NarHash', `NarHash: md5:${createHash('md5').update(VICTIM.nar).digest('hex')}`)],
  ['NarSize one more than the NAR', replace('NarSize', `NarSize: ${VICTIM.nar.length + 1}`)],
  ['NarSize 0', replace('NarSize', 'NarSize: 0')],
  ['NarSize negative', replace('NarSize', 'NarSize: -1')],
  ['NarSize beyond 2^64', replace('NarSize', 'NarSize: 99999999999999999999999')],
  ['NarSize missing', replace('NarSize')],
  ['a second NarSize that lies (the last counts, as with Nix)', (l: string[]) => [...l, `NarSize: ${VICTIM.nar.length - 8}`]],
  ['a second StorePath naming another path', (l: string[]) => [...l, `StorePath: /nix/store/${storeName('other')}`]],
  ['References naming an invalid path', replace('References', 'References: not-a-store-path')],
  ['References naming a path the store lacks', replace('References', `References: ${storeName('absent')}`)],
  ['References with a traversal', replace('References', 'References: ../../etc/passwd')],
  ['Deriver invalid', (l: string[]) => [...l, 'Deriver: ../x.drv']],
  ['Sig not name:base64', (l: string[]) => [...l, 'Sig: no-colon-here']],
  ['CA of an unknown kind', (l: string[]) => [...l, 'CA: fixed:r:sha999:abc']],
  ['a line that is not "Key: value"', (l: string[]) => [...l, 'just words']],
  ['a blank line', (l: string[]) => [l[0]!, '', ...l.slice(1)]],
  ['CRLF line ends', (l: string[]) => l.map((x) => `${x}\r`)],
  ['a NUL in StorePath', replace('StorePath', `StorePath: /nix/store/${VICTIM.base}\0`)],
  ['a NUL in NarSize', replace('NarSize', `NarSize: ${VICTIM.nar.length}\0`)],
  ['a 1 MiB line (over the narinfo limit)', (l: string[]) => [...l, `X-Padding: ${'a'.repeat(1 << 20)}`]],
  ['a 512 KiB References line of invalid names', replace('References', `References: ${'a '.repeat(1 << 18)}`)],
].map(([name, edit]) => ({ name: `narinfo: ${name as string}`, request: putNarInfo(VICTIM, narinfo(VICTIM, edit as (l: string[]) => string[])), want: 0 }))
  .map((c) => ({ ...c, want: c.name.includes('1 MiB line') ? 413 : 400 }))

const RAW_NARINFO_CASES: Case[] = [
  { name: 'narinfo: no newline at the end', request: putNarInfo(VICTIM, narinfo(VICTIM).slice(0, -1)), want: 400 },
  { name: 'narinfo: empty', request: putNarInfo(VICTIM, ''), want: 400 },
  { name: 'narinfo: not UTF-8', request: putNarInfo(VICTIM, Buffer.from([0xff, 0xfe, 0x0a])), want: 400 },
  { name: 'narinfo: for another hash part than its URL', request: put(`/${hashPart(storeName('other'))}.narinfo`, narinfo(VICTIM)), want: 400 },
  { name: 'narinfo: at a hash part that is not nixbase32', request: put(`/${'e'.repeat(32)}.narinfo`, narinfo(VICTIM)), want: 400 },
]

const VICTIM_BODY = Buffer.from(narinfo(VICTIM))
const head = (method: string, url: string, headers: string[]) => `${method} ${url} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`

/** Content-Length and Transfer-Encoding that lie or contradict each other: node's parser refuses most before our handler runs. */
const LENGTH_CASES: Case[] = [
  { name: 'Content-Length shorter than the narinfo', request: Buffer.concat([Buffer.from(head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, ['Connection: close', `Content-Length: ${VICTIM_BODY.length - 20}`])), VICTIM_BODY]), want: 400 },
  { name: 'Content-Length negative', request: Buffer.concat([Buffer.from(head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, ['Content-Length: -5'])), VICTIM_BODY]), want: 400 },
  { name: 'Content-Length not a number', request: Buffer.concat([Buffer.from(head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, ['Content-Length: 12abc'])), VICTIM_BODY]), want: 400 },
  { name: 'two Content-Length headers that differ', request: Buffer.concat([Buffer.from(head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, [`Content-Length: ${VICTIM_BODY.length}`, `Content-Length: ${VICTIM_BODY.length + 1}`])), VICTIM_BODY]), want: 400 },
  { name: 'Content-Length beyond 2^64', request: Buffer.concat([Buffer.from(head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, ['Content-Length: 99999999999999999999999'])), VICTIM_BODY]), want: 400 },
  { name: 'Content-Length over the narinfo limit: refused before the body', request: head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, ['Connection: close', `Content-Length: ${(1 << 20) + 1}`]), want: 413 },
  { name: 'Content-Length and chunked together', request: Buffer.concat([Buffer.from(head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, [`Content-Length: ${VICTIM_BODY.length}`, 'Transfer-Encoding: chunked'])), VICTIM_BODY]), want: 400 },
  { name: 'a chunk size that is not hex', request: head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, ['Transfer-Encoding: chunked']) + 'zz\r\nhello\r\n0\r\n\r\n', want: 400 },
  { name: 'a chunk size beyond 2^64', request: head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, ['Transfer-Encoding: chunked']) + 'fffffffffffffffffff\r\nhello\r\n', want: 400 },
  { name: 'a chunk longer than its size says', request: head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, ['Transfer-Encoding: chunked']) + '2\r\nhello\r\n0\r\n\r\n', want: 400 },
]

const nar100k = nar(regular('x'.repeat(100 * 1024)))
const truncated = VICTIM.nar.subarray(0, VICTIM.nar.length - 16)
const trailing = Buffer.concat([SEED.nar, Buffer.alloc(8)])
/** NAR PUTs that are wrong in themselves; each named by its own bytes' hash unless the name is the fault. */
const NAR_CASES: Case[] = [
  { name: 'NAR: ends early (Content-Length agrees)', request: put(`/${narUrl(truncated)}`, truncated), want: 400 },
  { name: 'NAR: more bytes after its end', request: put(`/${narUrl(trailing)}`, trailing), want: 400 },
  { name: 'NAR: longer than Content-Length says (cut there; the rest is no request)', request: Buffer.concat([put(`/${narUrl(truncated)}`, truncated), VICTIM.nar.subarray(truncated.length)]), want: 400 },
  { name: 'NAR: larger than --max-nar-size', request: put(`/${narUrl(nar100k)}`, nar100k), want: 413 },
  { name: 'NAR: bytes other than its name hashes', request: put(`/${narUrl(SEED.nar)}`, nar(regular('tampered'))), want: 400 },
  { name: 'NAR: a name that is not nixbase32', request: put(`/nar/${'e'.repeat(52)}.nar`, SEED.nar), want: 400 },
  { name: 'NAR: an unknown extension', request: put(`/nar/${nb32(sha256(SEED.nar))}.nar.rar`, SEED.nar), want: 400 },
  { name: 'NAR: not a NAR at all', request: put(`/${narUrl(Buffer.from('hello'))}`, 'hello'), want: 400 },
  { name: 'NAR: a length field of 2^64 - 1', request: (() => { const b = Buffer.from(SEED.nar); b.writeBigUInt64LE(2n ** 64n - 1n, 0); return put(`/${narUrl(b)}`, b) })(), want: 400 },
  { name: 'NAR: HEAD of one never uploaded', request: head('HEAD', `/nar/${nb32(sha256(Buffer.from('never')))}.nar`, ['Connection: close']), want: 404 },
]

/** Odd URLs and methods: nothing outside the cache's few names is reachable, and there is no filesystem path to escape to. */
const URL_CASES: Case[] = [
  { name: 'GET /nar/../../etc/passwd', request: get('/nar/../../etc/passwd'), want: 404 },
  { name: 'GET /%2e%2e/%2e%2e/etc/passwd', request: get('/%2e%2e/%2e%2e/etc/passwd'), want: 404 },
  { name: 'GET the seed narinfo through /nar/..', request: get(`/nar/../${hashPart(SEED.base)}.narinfo`), want: 404 },
  { name: 'GET //nix-cache-info', request: get('//nix-cache-info'), want: 404 },
  { name: 'GET an absolute-form URL', request: get('http://elsewhere.invalid/etc/passwd'), want: 404 },
  { name: 'GET with a NUL in the path', request: get('/nix-cache-info\0.narinfo'), want: 400 },
  { name: 'GET a 10 KiB path', request: get(`/${'a'.repeat(10 * 1024)}`), want: 404 },
  { name: 'GET a 100 KiB path (over the header limit)', request: get(`/${'a'.repeat(100 * 1024)}`), want: 431 },
  { name: 'GET a NAR whose hashes are not nixbase32', request: get(`/nar/${'e'.repeat(32)}-${'e'.repeat(52)}.nar`), want: 404 },
  { name: 'GET the seed NAR with a range past its end', request: get(`/nar/${hashPart(SEED.base)}-${nb32(sha256(SEED.nar))}.nar`, [`Range: bytes=${SEED.nar.length}-`]), want: 416 },
  { name: 'PUT /../nix-cache-info', request: put('/../nix-cache-info', 'StoreDir: /tmp\n'), want: 404 },
  { name: 'PUT /nix-cache-info', request: put('/nix-cache-info', 'StoreDir: /tmp\n'), want: 403 },
  { name: 'PUT /nar/../<hash>.narinfo', request: put(`/nar/../${hashPart(VICTIM.base)}.narinfo`, VICTIM_BODY), want: 404 },
  { name: 'an unknown method', request: 'FROB / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', want: 400 },
  { name: 'DELETE', request: 'DELETE /nix-cache-info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n', want: 405 },
  { name: 'CONNECT', request: 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', want: 405 },
  { name: 'a request line that is not HTTP', request: 'hello world\r\n\r\n', want: 400 },
  { name: 'no Host header', request: 'GET /nix-cache-info HTTP/1.1\r\n\r\n', want: 400 },
  { name: 'bare LF line ends', request: 'GET /nix-cache-info HTTP/1.1\nHost: 127.0.0.1\n\n', want: 400 },
]

const HEADER_CASES: Case[] = [
  { name: 'one 20 KiB header', request: get('/nix-cache-info', [`X-Big: ${'a'.repeat(20 * 1024)}`]), want: 431 },
  { name: '3,000 headers', request: get('/nix-cache-info', Array.from({ length: 3000 }, (_, i) => `X-${i}: 1`)), want: 431 },
  { name: '1,500 small headers (within 16 KiB): served', request: get('/nix-cache-info', Array.from({ length: 1500 }, (_, i) => `X${i}: 1`)), want: 200 },
  { name: 'a folded header line', request: get('/nix-cache-info', ['X-A: 1', '  folded']), want: 400 },
  { name: 'Expect: something other than 100-continue', request: put(`/${hashPart(VICTIM.base)}.narinfo`, VICTIM_BODY, ['Expect: 200-ok']), want: 417 },
]

// One daemon for every case, started and stopped inside the suite (spawn.ts kills what is left at the file's end).
describe('a daemon serving a binary cache with uploads', () => {
  before(async () => {
    daemon = await startDaemon(store, `unix:${path.join(root, 'd.sock')}`, ['--http-listen', '127.0.0.1:0', '--http-upload', '--max-nar-size', String(MAX_NAR)])
    port = Number(/Nix binary cache at http:\/\/127\.0\.0\.1:(\d+)/.exec(daemon.log())![1])
    assert.equal((await send(put(`/${narUrl(SEED.nar)}`, SEED.nar))).status, 200)
    assert.equal((await send(putNarInfo(SEED, narinfo(SEED)))).status, 200)
    assert.equal((await send(put(`/${narUrl(VICTIM.nar)}`, VICTIM.nar))).status, 200)
  })

  after(async () => {
    if (daemon) assert.equal(await daemon.stop(), 0)
    // One line per refused upload (or per failed read), never a stack trace.
    for (const line of daemon?.log().split('\n').filter(Boolean) ?? []) assert.doesNotMatch(line, /^\s+at |TypeError|RangeError/, line)
    fs.rmSync(root, { recursive: true, force: true })
  })

  describe('the HTTP binary cache refuses bad requests with a 4xx and stays as it was', () => {
    for (const c of [...NARINFO_CASES, ...RAW_NARINFO_CASES, ...LENGTH_CASES, ...NAR_CASES, ...URL_CASES, ...HEADER_CASES]) {
      test(c.name, () =>
        unchanged(async () => {
          const r = await send(c.request)
          if (c.want === 'closed') assert.equal(r.status, undefined, r.raw)
          else assert.equal(r.status, c.want, r.raw.slice(0, 300))
        }),
      )
    }
  })

  describe('bodies that end early or never end', () => {
    /** Starts a request and sends `part` of its body; the test then drops or holds the connection. */
    async function started(request: Buffer, part: number): Promise<RawHttp> {
      const c = new RawHttp(port)
      await c.write(request.subarray(0, part))
      return c
    }

    test('a narinfo whose Content-Length is longer than what comes, then the client half-closes: 400, nothing stored', () =>
      unchanged(async () => {
        const req = putNarInfo(VICTIM, VICTIM_BODY)
        const c = await started(req, req.length - 10)
        await assertServes()
        c.socket.end()
        assert.equal((await c.closed()).status, 400)
      }))

    for (const [what, part] of [['halfway', 0.5], ['just before its end', 0.99]] as const) {
      test(`a NAR cut off ${what} (the connection closes): no answer, its blobs not stored, no temp file`, () =>
        unchanged(async () => {
          const big = nar(directory(entry('f', regular('y'.repeat(40 * 1024))), entry('g', regular('z'.repeat(8 * 1024)))))
          const req = put(`/${narUrl(big)}`, big)
          const c = await started(req, Math.floor(req.length * part))
          await assertServes()
          c.destroy()
        }))
    }

    test('a chunked NAR that never ends: the daemon serves others meanwhile; once the client goes, nothing is left', () =>
      unchanged(async () => {
        const c = new RawHttp(port)
        await c.write(head('PUT', `/nar/${nb32(sha256(Buffer.from('endless')))}.nar`, ['Transfer-Encoding: chunked']))
        // A NAR that opens a file of 2^40 bytes, then sends it slowly, forever as far as the daemon knows.
        const size = Buffer.alloc(8)
        size.writeBigUInt64LE(2n ** 40n)
        const start = Buffer.concat([nar(toks('(', 'type', 'regular', 'contents')), size])
        await c.write(`${start.length.toString(16)}\r\n`)
        await c.write(Buffer.concat([start, Buffer.from('\r\n')]))
        // 32 KiB in all: within --max-nar-size, so the upload is still going when the client leaves.
        for (let i = 0; i < 8; i++) {
          await c.write(`1000\r\n${'q'.repeat(0x1000)}\r\n`)
          await assertServes()
        }
        assert.equal(c.received, '', 'no answer while the NAR is still coming')
        c.destroy()
      }))

    test('a chunked narinfo that stops mid-chunk, the client still there: others are served; it is dropped when the client goes', () =>
      unchanged(async () => {
        const c = new RawHttp(port)
        await c.write(head('PUT', `/${hashPart(VICTIM.base)}.narinfo`, ['Transfer-Encoding: chunked']))
        await c.write(`${VICTIM_BODY.length.toString(16)}\r\n${VICTIM_BODY.subarray(0, 10).toString('latin1')}`)
        await assertServes()
        assert.equal(c.received, '', 'no answer while the narinfo is still coming')
        c.destroy()
      }))
  })

  describe('after every bad request', () => {
    test('the victim\'s own narinfo, with fields Nix ignores, publishes it: the NAR uploaded before them all is intact', async () => {
      const text = narinfo(VICTIM, (l) => [...l, 'System: x86_64-linux', 'Unknown-Field: whatever'])
      assert.equal((await send(putNarInfo(VICTIM, text))).status, 200)
      const info = await send(get(`/${hashPart(VICTIM.base)}.narinfo`))
      assert.equal(info.status, 200)
      assert.match(info.raw, new RegExp(`NarSize: ${VICTIM.nar.length}\n`))
      const url = /\nURL: (\S+)\n/.exec(info.raw)![1]!
      const n = await send(get(`/${url}`))
      assert.ok(Buffer.from(n.raw.slice(n.raw.indexOf('\r\n\r\n') + 4), 'latin1').equals(VICTIM.nar))
      assert.deepEqual(tempFiles(store), [])
    })
  })
})
