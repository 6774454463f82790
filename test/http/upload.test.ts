/**
 * Uploads to the HTTP binary cache in-process, over a memory store, with
 * our own HTTP requests shaped as Nix 2.8 sends them (the NAR named by
 * its FileHash, then the narinfo): what is refused, with which 4xx, and
 * that a refused upload leaves the store's PathInfos, and the blobs of
 * the refused NAR, as they were. Real Nix as the client is in
 * test/e2e/binary-cache-upload.test.ts.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import type { BlobStage } from '../../src/castore/blob-service.js'
import { b3 } from '../../src/castore/digest.js'
import { collectGarbage } from '../../src/ops/gc.js'
import { BackendError } from '../../src/errors.js'
import { isLoopback, parseAuthFile } from '../../src/http/auth.js'
import { PendingNars } from '../../src/http/pending-nars.js'
import { type HttpCache, type TcpAddress, startHttpCache } from '../../src/http/server.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { Store } from '../../src/store/store.js'
import { directory, entry, nar, regular, symlink } from '../helpers/nar.js'
import { memoryStore } from '../helpers/ops.js'

const LOOPBACK: TcpAddress = { kind: 'tcp', host: '127.0.0.1', port: 0 }
const basic = (userPass: string) => `Basic ${Buffer.from(userPass).toString('base64')}`
const ALICE = basic('alice:pa:ss')
const TOKEN = basic(':t0ken')
const AUTH_FILE = '# uploaders\nalice:pa:ss\n\n:t0ken\n'
const MAX_NAR_SIZE = 64 * 1024

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest()
/** `nar/<FileHash>.nar`: the name Nix gives an uncompressed NAR it uploads. */
const narName = (file: Uint8Array) => `nar/${nixbase32.encode(sha256(file))}.nar`
/** A store path basename with a made-up hash part (input-addressed: nothing ties it to the content). */
const storeName = (name: string) => `${nixbase32.encode(sha256(Buffer.from(name)).subarray(0, 20))}-${name}`

interface NarInfo {
  name: string
  nar: Buffer
  url?: string
  narHash?: string
  references?: string[]
  extra?: string[]
}

/** A narinfo as `nix copy --to http://…?compression=none` writes it. */
function narinfo(o: NarInfo): string {
  const hash = `sha256:${nixbase32.encode(sha256(o.nar))}`
  return [
    `StorePath: /nix/store/${o.name}`,
    `URL: ${o.url ?? narName(o.nar)}`,
    'Compression: none',
    `FileHash: ${hash}`,
    `FileSize: ${o.nar.length}`,
    `NarHash: ${o.narHash ?? hash}`,
    `NarSize: ${o.nar.length}`,
    `References: ${(o.references ?? []).join(' ')}`,
    ...(o.extra ?? []),
    '',
  ].join('\n')
}

interface Watch {
  /** How each blob stage of the store ended, in the order they were opened. */
  stages: Array<{ outcome?: 'committed' | 'aborted'; ended: Promise<void> }>
  opened: Array<() => void>
}

/** `store` with its blob stages watched. */
function watched(store: Store, watch: Watch): Store {
  const stage = (): BlobStage => {
    const inner = (store.blobs as unknown as { stage(): BlobStage }).stage()
    let end!: () => void
    const record: Watch['stages'][number] = { ended: new Promise((r) => (end = r)) }
    watch.stages.push(record)
    for (const f of watch.opened.splice(0)) f()
    return {
      put: (src, o) => inner.put(src, o),
      commit: async (o) => {
        await inner.commit(o)
        record.outcome = 'committed'
        end()
      },
      abort: async (o) => {
        await inner.abort(o)
        record.outcome = 'aborted'
        end()
      },
    }
  }
  const blobs = new Proxy(store.blobs, { get: (t, k) => (k === 'stage' ? stage : (Reflect.get(t, k) as unknown)) })
  return new Proxy(store, { get: (t, k) => (k === 'blobs' ? blobs : (Reflect.get(t, k) as unknown)) })
}

describe('HTTP binary cache uploads', () => {
  let store: Store
  let cache: HttpCache
  const logs: string[] = []
  const watch: Watch = { stages: [], opened: [] }

  before(async () => {
    store = await memoryStore()
    cache = await startHttpCache(watched(store, watch), LOOPBACK, (l) => logs.push(l), {
      priority: 40,
      upload: { maxNarSize: MAX_NAR_SIZE },
      credentials: parseAuthFile(AUTH_FILE, 'auth'),
    })
  })
  after(async () => {
    await cache.shutdown()
    await store.close()
  })

  async function request(method: string, p: string, body?: string | Buffer, authorization: string | undefined = ALICE) {
    const res = await fetch(`${cache.url}/${p}`, { method, body: body === undefined ? undefined : new Uint8Array(Buffer.from(body)), headers: authorization ? { authorization } : {} })
    return { status: res.status, text: await res.text(), challenge: res.headers.get('www-authenticate') }
  }
  const put = (p: string, body: string | Buffer, authorization?: string) => request('PUT', p, body, authorization)
  const paths = async () => {
    const names: string[] = []
    for await (const info of store.pathInfos.list()) names.push(Buffer.from(info.node.name).toString())
    return names.sort()
  }
  /** Asserts a refusal: its status, its one-line reason, the PathInfos as they were, nothing logged. */
  async function refused(r: { status: number; text: string }, status: number, reason: RegExp, before: string[]) {
    assert.equal(r.status, status, r.text)
    assert.match(r.text, reason)
    assert.equal(r.text.split('\n').length, 2, `one line: ${r.text}`)
    assert.deepEqual(await paths(), before)
    assert.deepEqual(logs, [])
  }

  const leaf = { name: storeName('up-leaf'), nar: nar(regular('leaf\n')) }
  const top = {
    name: storeName('up-top'),
    nar: nar(directory(entry('data', regular('top data '.repeat(500), true)), entry('leaf', symlink(`/nix/store/${leaf.name}`)))),
    references: [leaf.name],
  }

  test('a NAR then its narinfo publish the path, keeping References, Deriver and Sig; the same again is 200, other content 409', async () => {
    assert.equal((await request('HEAD', narName(leaf.nar))).status, 404, 'pending before it was uploaded')
    assert.equal((await put(narName(leaf.nar), leaf.nar, TOKEN)).status, 200)
    assert.equal((await request('HEAD', narName(leaf.nar), undefined, TOKEN)).status, 200)
    assert.deepEqual(await paths(), [], 'a NAR alone publishes nothing')

    const sig = `test-1:${Buffer.alloc(64, 7).toString('base64')}`
    const text = narinfo({ ...leaf, extra: [`Deriver: ${storeName('up-leaf.drv')}`, `Sig: ${sig}`] })
    assert.equal((await put(`${leaf.name.slice(0, 32)}.narinfo`, text)).status, 200)
    assert.deepEqual(await paths(), [leaf.name])
    const served = await (await fetch(`${cache.url}/${leaf.name.slice(0, 32)}.narinfo`)).text()
    assert.match(served, new RegExp(`^Deriver: ${storeName('up-leaf.drv')}$`, 'm'))
    assert.match(served, new RegExp(`^Sig: ${sig.replace(/[+/]/g, '\\$&')}$`, 'm'))
    assert.match(served, new RegExp(`^NarHash: sha256:${nixbase32.encode(sha256(leaf.nar))}$`, 'm'))

    assert.equal((await put(`${leaf.name.slice(0, 32)}.narinfo`, text)).status, 200, 'the same narinfo again')
    const other = nar(regular('other\n'))
    assert.equal((await put(narName(other), other)).status, 200)
    await refused(await put(`${leaf.name.slice(0, 32)}.narinfo`, narinfo({ name: leaf.name, nar: other })), 409, /already in this cache with another NAR hash/, [leaf.name])
  })

  test('a narinfo naming a reference the store lacks is 400 naming it; once the reference is in, it goes in', async () => {
    const missing = storeName('up-missing')
    const before = await paths()
    assert.equal((await put(narName(top.nar), top.nar)).status, 200)
    const text = narinfo({ ...top, references: [missing, leaf.name] })
    await refused(await put(`${top.name.slice(0, 32)}.narinfo`, text), 400, new RegExp(`refers to a path the store does not have: /nix/store/${missing}$`, 'm'), before)
    assert.equal((await put(`${top.name.slice(0, 32)}.narinfo`, narinfo(top))).status, 200)
    assert.deepEqual(await paths(), [...before, top.name].sort())
  })

  test('a tampered NAR (not the bytes its name hashes) is 400, and none of it is stored', async () => {
    const honest = nar(regular('honest contents\n'))
    const tampered = nar(regular('tampered content\n'))
    const before = await paths()
    const stages = watch.stages.length
    await refused(await put(narName(honest), tampered), 400, /SHA-256 is \S+, not the \S+ its name says: damaged or tampered/, before)
    assert.equal(watch.stages[stages]?.outcome, 'aborted')
    assert.equal(await store.blobs.has(b3(Buffer.from('tampered content\n'))), false)
    assert.equal((await request('HEAD', narName(honest))).status, 404)
    // The narinfo that would have named it finds no NAR.
    await refused(await put(`${storeName('up-t').slice(0, 32)}.narinfo`, narinfo({ name: storeName('up-t'), nar: honest })), 400, /was not uploaded here/, before)
  })

  test('a narinfo whose NarHash lies is 400, and one for a NAR never uploaded is 400', async () => {
    const lie = { name: storeName('up-lie'), nar: nar(regular('what was uploaded\n')) }
    const before = await paths()
    assert.equal((await put(narName(lie.nar), lie.nar)).status, 200)
    const narHash = `sha256:${nixbase32.encode(sha256(Buffer.from('something else')))}`
    await refused(await put(`${lie.name.slice(0, 32)}.narinfo`, narinfo({ ...lie, narHash })), 400, /^NarHash mismatch: the narinfo says sha256:\S+ \(\d+ bytes\), the uploaded nar\/\S+ is sha256:/, before)
    const never = nar(regular('never uploaded\n'))
    await refused(await put(`${lie.name.slice(0, 32)}.narinfo`, narinfo({ name: lie.name, nar: never })), 400, /^the NAR nar\/\S+\.nar was not uploaded here/, before)
  })

  test('bad bodies: not a NAR, garbage labelled xz, too large, a corrupt narinfo, a narinfo for another path: 4xx', async () => {
    const before = await paths()
    const junk = Buffer.from('not a NAR at all, just some words')
    await refused(await put(narName(junk), junk), 400, /^the uploaded \.nar is neither a NAR nor compressed data Nix can read$/m, before)
    const junkXz = `nar/${nixbase32.encode(sha256(junk))}.nar.xz`
    await refused(await put(junkXz, junk), 400, /not compressed data that Nix can read/, before)
    const big = nar(regular('x'.repeat(MAX_NAR_SIZE)))
    await refused(await put(narName(big), big), 413, /larger than --max-nar-size \(65536 bytes \(64\.0 KiB\)\)/, before)
    await refused(await put(`${leaf.name.slice(0, 32)}.narinfo`, 'StorePath: /nix/store/x\n\n'), 400, /^corrupt narinfo/, before)
    await refused(await put(`${top.name.slice(0, 32)}.narinfo`, narinfo(leaf)), 400, /^the narinfo is for \/nix\/store\/\S+-up-leaf, not for /, before)
    await refused(await put(`${leaf.name.slice(0, 32)}.narinfo`, 'x'.repeat((1 << 20) + 1)), 413, /narinfo is larger than/, before)
  })

  test('a pending NAR whose tree gc took is forgotten: HEAD 404, its narinfo 400; uploaded again, it goes in', async () => {
    const swept = { name: storeName('up-swept'), nar: nar(directory(entry('f', regular('swept away\n')))) }
    const before = await paths()
    assert.equal((await put(narName(swept.nar), swept.nar)).status, 200)
    const report = await collectGarbage(store, { graceMs: 0 })
    assert.ok(report.directories >= 1, 'gc took the unreferenced tree')
    assert.equal((await request('HEAD', narName(swept.nar))).status, 404, 'HEAD vouches for a tree that is gone: Nix would never send it again')
    await refused(await put(`${swept.name.slice(0, 32)}.narinfo`, narinfo(swept)), 400, /was not uploaded here \(or too long ago\)/, before)
    assert.equal((await put(narName(swept.nar), swept.nar)).status, 200)
    assert.equal((await put(`${swept.name.slice(0, 32)}.narinfo`, narinfo(swept))).status, 200)
    assert.deepEqual(await paths(), [...before, swept.name].sort())
  })

  test('a .ls listing is accepted (and dropped); nix-cache-info and other names cannot be uploaded', async () => {
    assert.equal((await put(`${leaf.name.slice(0, 32)}.ls`, '{"version":1,"root":{"type":"regular"}}')).status, 200)
    assert.equal((await put('nix-cache-info', 'StoreDir: /nix/store\n')).status, 403)
    assert.equal((await put('nar/foo.nar', 'x')).status, 404)
  })

  test('a truncated upload (the connection closes mid-body) answers nothing and stores nothing', async () => {
    const file = nar(regular('t'.repeat(10_000)))
    const before = await paths()
    const stages = watch.stages.length
    const opened = new Promise<void>((r) => watch.opened.push(r))
    const sock = net.connect(Number(new URL(cache.url).port), '127.0.0.1')
    sock.on('error', () => {})
    const answered: Buffer[] = []
    sock.on('data', (c: Buffer) => answered.push(c))
    sock.write(`PUT /${narName(file)} HTTP/1.1\r\nHost: cache\r\nAuthorization: ${ALICE}\r\nContent-Length: ${file.length}\r\n\r\n`)
    sock.write(file.subarray(0, 5000))
    // The server is ingesting (its stage is open) when the connection goes.
    await opened
    sock.destroy()
    await watch.stages[stages]!.ended
    assert.equal(watch.stages[stages]!.outcome, 'aborted')
    assert.equal(Buffer.concat(answered).length, 0)
    assert.equal((await request('HEAD', narName(file))).status, 404)
    assert.deepEqual(await paths(), before)
    assert.deepEqual(logs, [], 'a client that goes away is not a failure of ours')
  })

  test('uploads without credentials, or with wrong ones, are 401 with a Basic challenge; reads and nix-cache-info need none', async () => {
    const file = nar(regular('unauthorised\n'))
    const before = await paths()
    for (const auth of [undefined, basic('alice:wrong'), basic('alice:pa'), basic(':wrong'), 'Bearer t0ken']) {
      const r = await put(narName(file), file, auth ?? '')
      await refused(r, 401, /wants credentials/, before)
      assert.equal(r.challenge, 'Basic realm="tvix-store"')
      assert.equal((await request('HEAD', narName(file), undefined, auth ?? '')).status, 401)
    }
    assert.equal((await request('GET', 'nix-cache-info', undefined, '')).status, 200)
    assert.equal((await request('GET', `${leaf.name.slice(0, 32)}.narinfo`, undefined, '')).status, 200)
  })

  test('a PUT with `Expect: 100-continue` (as Nix sends every one) is told to continue only when it is accepted', async () => {
    /** The first response a PUT gets before it sends any of its body. */
    const firstResponse = async (authorization: string) => {
      const sock = net.connect(Number(new URL(cache.url).port), '127.0.0.1')
      sock.on('error', () => {})
      sock.write(`PUT /${narName(leaf.nar)} HTTP/1.1\r\nHost: cache\r\nAuthorization: ${authorization}\r\nExpect: 100-continue\r\nContent-Length: ${leaf.nar.length}\r\n\r\n`)
      const [data] = (await once(sock, 'data')) as [Buffer]
      sock.destroy()
      return data.toString('latin1')
    }
    const refusedEarly = await firstResponse(basic('alice:wrong'))
    assert.match(refusedEarly, /^HTTP\/1\.1 401 Unauthorized\r\n/)
    assert.match(refusedEarly, /\r\nConnection: close\r\n/i, 'the body it never sent cannot be read: the connection closes')
    assert.match(await firstResponse(ALICE), /^HTTP\/1\.1 100 Continue\r\n\r\n/)
  })

  test('a store failure on a PUT is a 400 with the reason, logged once: never a 5xx', async () => {
    const failing = new Proxy(store, {
      get: (t, k) =>
        k === 'pathInfos'
          ? new Proxy(t.pathInfos, { get: (p, m) => (m === 'put' ? async () => Promise.reject(new BackendError('the disk is on fire')) : (Reflect.get(p, m) as unknown)) })
          : (Reflect.get(t, k) as unknown),
    })
    const failLogs: string[] = []
    const other = await startHttpCache(failing, LOOPBACK, (l) => failLogs.push(l), { priority: 40, upload: { maxNarSize: MAX_NAR_SIZE } })
    try {
      const p = { name: storeName('up-fire'), nar: nar(regular('fire\n')) }
      assert.equal((await fetch(`${other.url}/${narName(p.nar)}`, { method: 'PUT', body: new Uint8Array(p.nar) })).status, 200, 'no credentials configured: anyone on loopback')
      const r = await fetch(`${other.url}/${p.name.slice(0, 32)}.narinfo`, { method: 'PUT', body: narinfo(p) })
      assert.deepEqual([r.status, await r.text()], [400, 'the disk is on fire\n'])
      assert.equal(failLogs.length, 1, failLogs.join('\n'))
      assert.match(failLogs[0]!, /^PUT \/\S+\.narinfo failed: the disk is on fire$/)
    } finally {
      await other.shutdown()
    }
  })

  test('without upload enabled a PUT is 403; a private cache wants credentials for reads but not for nix-cache-info', async () => {
    const credentials = parseAuthFile(AUTH_FILE, 'auth')
    const readOnly = await startHttpCache(store, LOOPBACK, () => {}, { priority: 40, credentials, private: true })
    try {
      const get = (p: string, authorization?: string) => fetch(`${readOnly.url}/${p}`, { headers: authorization ? { authorization } : {} }).then((r) => r.status)
      assert.equal((await fetch(`${readOnly.url}/${narName(leaf.nar)}`, { method: 'PUT', body: new Uint8Array(leaf.nar), headers: { authorization: ALICE } })).status, 403)
      assert.equal(await get('nix-cache-info'), 200)
      assert.equal(await get(`${leaf.name.slice(0, 32)}.narinfo`), 401)
      assert.equal(await get(`${leaf.name.slice(0, 32)}.narinfo`, basic('alice:nope')), 401)
      assert.equal(await get(`${leaf.name.slice(0, 32)}.narinfo`, ALICE), 200)
    } finally {
      await readOnly.shutdown()
    }
  })
})

describe('auth file and listen address', () => {
  test('comments, blank lines, CRLF and passwords with colons are read; an empty file or a line without a password is refused by its number', () => {
    const creds = parseAuthFile('# a\r\n\r\nbob:x:y\r\n  # indented comment\n:t\n', 'f')
    assert.deepEqual([basic('bob:x:y'), basic(':t'), basic('bob:x'), basic('bob:x:y:'), basic(''), 'basic ' + Buffer.from(':t').toString('base64')].map((h) => creds.accepts(h)), [true, true, false, false, false, true])
    assert.throws(() => parseAuthFile('# only comments\n\n', 'f'), /^UsageError: --http-auth-file f holds no credentials/)
    assert.throws(() => parseAuthFile('ok:1\nsecret-user:\n', 'f'), (e: Error) => e.message === '--http-auth-file f: line 2 is not "user:password" or ":token"')
  })

  test('loopback is 127.0.0.0/8, ::1 and localhost; anything else is reachable from elsewhere', () => {
    assert.deepEqual(['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1'].map(isLoopback), [true, true, true, true, true])
    assert.deepEqual(['0.0.0.0', '::', '10.0.0.1', 'example.com', '128.0.0.1'].map(isLoopback), [false, false, false, false, false])
  })
})

describe('pending NARs', () => {
  const nar = (n: number) => ({ root: { kind: 'symlink' as const, name: new Uint8Array(0), target: Buffer.from('x') }, narSha256: new Uint8Array(32), narSize: n, fileSize: n })

  test('expire after their time and are bounded in number, oldest first', () => {
    let now = 0
    const pending = new PendingNars({ maxEntries: 2, ttlMs: 1000, now: () => now })
    pending.add('a', nar(1))
    now = 500
    pending.add('b', nar(2))
    assert.equal(pending.get('a')?.narSize, 1)
    now = 1000
    assert.equal(pending.get('a'), undefined, 'a expired')
    assert.equal(pending.get('b')?.narSize, 2)
    pending.add('c', nar(3))
    pending.add('d', nar(4))
    assert.deepEqual([pending.get('b'), pending.size], [undefined, 2], 'b went first')
  })
})
