/**
 * Our BatchBlobService (many small blobs per call) through real daemons on
 * real sockets: import, export-nar and copy give Nix's bytes and paths
 * through batches (the daemon's trace says they were used: ReadBlobs,
 * PutBlobs, and StatBlobs for a copy's lookups); a daemon
 * without them (--no-batch-blobs, as a tvix daemon) gets a call per blob
 * and the same bytes; per-blob absence, a digest mismatch, tokens, and
 * hostile batches are bounded. A blob sent wrong inside a batch:
 * test/e2e/daemon-wrong-blob.test.ts (its export runs on batches).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { openGrpcStore } from '../../src/backends/grpc/index.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import type { GrpcBlobService } from '../../src/backends/grpc/blob.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { LARGER } from '../../src/castore/read-ahead.js'
import { BlobState, putBlobsRequest, readBlobsRequest, readBlobsResponse, statBlobsRequest, statBlobsResponse } from '../../src/grpc/batch-messages.js'
import { statBlobRequest } from '../../src/grpc/messages.js'
import { Status } from '../../src/grpc/status.js'
import { parseListen } from '../../src/daemon/listen.js'
import { type Daemon, DEFAULT_LIMITS, startDaemon as startInProcess } from '../../src/daemon/server.js'
import { SecretSet } from '../../src/util/secret-set.js'
import type { Rights } from '../../src/daemon/auth.js'
import { runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { RawGrpc } from '../helpers/raw-grpc.js'
import { randomBytes } from '../helpers/trees.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'batches-'))
after(() => fs.rmSync(root, { recursive: true, force: true }))

/** Sizes of the batches in the daemon's batch trace (TVIX_STORE_TRACE_BATCHES=1), of one kind. */
function batches(log: string, kind: 'ReadBlobs' | 'PutBlobs' | 'StatBlobs'): number[] {
  return [...log.matchAll(new RegExp(`trace: ${kind} of (\\d+) blobs`, 'g'))].map((m) => Number(m[1]))
}

/** How many blobs went in batches of each kind. */
function batched(log: string, kind: 'ReadBlobs' | 'PutBlobs' | 'StatBlobs'): number {
  return batches(log, kind).reduce((a, b) => a + b, 0)
}

describe('through the CLI', { skip: nixMissing() }, () => {
  const tree = path.join(root, 'tree')
  let nixPath = ''
  let batching: RunningDaemon
  let target: RunningDaemon
  let plain: RunningDaemon

  before(async () => {
    // 250 small files (some empty, some alike), one of exactly 1 MiB and one just over (not batched), a symlink.
    for (let i = 0; i < 250; i++) {
      const dir = path.join(tree, `d${i % 9}`)
      fs.mkdirSync(dir, { recursive: true })
      fs.writeFileSync(path.join(dir, `f${i}`), i % 50 === 0 ? '' : i % 7 === 0 ? 'same\n' : randomBytes((i * 37) % 5000, 100 + i), { mode: i % 11 === 0 ? 0o755 : 0o644 })
    }
    fs.writeFileSync(path.join(tree, 'one-mib'), randomBytes(1 << 20, 1))
    fs.writeFileSync(path.join(tree, 'over-one-mib'), randomBytes((1 << 20) + 1, 2))
    fs.symlinkSync('one-mib', path.join(tree, 'link'))
    nixPath = new NixStore(path.join(root, 'nix')).add(tree)
    process.env.TVIX_STORE_TRACE_BATCHES = '1'
    try {
      batching = await startDaemon(path.join(root, 'batching'), `unix:${path.join(root, 'b.sock')}`)
      target = await startDaemon(path.join(root, 'target'), `unix:${path.join(root, 't.sock')}`)
      plain = await startDaemon(path.join(root, 'plain'), `unix:${path.join(root, 'p.sock')}`, ['--no-batch-blobs'])
    } finally {
      delete process.env.TVIX_STORE_TRACE_BATCHES
    }
  })
  after(async () => {
    await batching?.stop()
    await target?.stop()
    await plain?.stop()
  })

  test('import, export-nar, copy both ways: nix-store --add\'s path, nix-store --dump\'s bytes, small blobs in batches', async () => {
    const imported = await runCli(['import', '--store', batching.url, tree])
    assert.equal(imported.code, 0, imported.stderr)
    assert.equal(imported.stdout.toString().trim(), nixPath)
    // 250 files, 5 empty and 35 alike: the distinct non-empty small ones went in batches.
    assert.ok(batched(batching.log(), 'PutBlobs') >= 150, batching.log())
    // The walk kept enough puts unanswered to fill a batch beyond the 32 it once waited at (one small batch per round trip).
    assert.ok(Math.max(...batches(batching.log(), 'PutBlobs')) > 32, batching.log())

    const want = NixStore.dump(tree)
    const exported = await runCli(['export-nar', '--store', batching.url, nixPath])
    assert.equal(exported.code, 0, exported.stderr)
    assert.ok(exported.stdout.equals(want), 'NAR differs from nix-store --dump')
    assert.ok(batched(batching.log(), 'ReadBlobs') >= 150, batching.log())

    // Daemon -> local: read in batches; local -> another daemon: looked up and put in batches.
    const local = path.join(root, 'local')
    const reads = batched(batching.log(), 'ReadBlobs')
    const down = await runCli(['copy', '--from', batching.url, '--to', local, nixPath])
    assert.equal(down.code, 0, down.stderr)
    assert.ok(batched(batching.log(), 'ReadBlobs') - reads >= 150, batching.log())
    const there = await runCli(['export-nar', '--store', local, nixPath])
    assert.ok(there.stdout.equals(want), 'copied NAR differs from nix-store --dump')

    const up = await runCli(['copy', '--from', local, '--to', target.url, nixPath])
    assert.equal(up.code, 0, up.stderr)
    assert.ok(batched(target.log(), 'StatBlobs') >= 150 && batched(target.log(), 'PutBlobs') >= 150, target.log())
    const back = await runCli(['export-nar', '--store', target.url, nixPath])
    assert.equal(back.code, 0, back.stderr)
    assert.ok(back.stdout.equals(want), 'NAR copied to a daemon differs')
  })

  test('import and export-nar through a daemon load no grpc-js (lean HTTP/2 calls only), for small files and a blob over 1 MiB alike', async () => {
    // The hook says whether the CLI loaded grpc-js: seen for a daemon (its server), so its silence for the clients means something.
    const env = { NODE_OPTIONS: `--require ${path.resolve('test/helpers/report-grpc-js.cjs')}` }
    const server = await runCli(['daemon', '--store', path.join(root, 'unused'), '--listen', `unix:${path.join(root, 'no-such-folder', 'd.sock')}`], { env })
    assert.equal(server.code, 1, server.stderr)
    assert.match(server.stderr, /grpc-js was loaded/)
    const small = path.join(root, 'small')
    for (let i = 0; i < 20; i++) fs.mkdirSync(path.join(small, `d${i % 3}`), { recursive: true })
    for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(small, `d${i % 3}`, `f${i}`), randomBytes(100 * i, 300 + i))
    const imported = await runCli(['import', '--store', batching.url, small], { env })
    assert.equal(imported.code, 0, imported.stderr)
    assert.equal(imported.stdout.toString().trim(), new NixStore(path.join(root, 'nix')).add(small))
    assert.doesNotMatch(imported.stderr, /grpc-js was loaded/)
    const exported = await runCli(['export-nar', '--store', batching.url, imported.stdout.toString().trim()], { env })
    assert.equal(exported.code, 0, exported.stderr)
    assert.ok(exported.stdout.equals(NixStore.dump(small)), 'NAR differs from nix-store --dump')
    assert.doesNotMatch(exported.stderr, /grpc-js was loaded/)

    const large = path.join(root, 'large')
    fs.mkdirSync(large)
    fs.writeFileSync(path.join(large, 'over-one-mib'), randomBytes((1 << 20) + 3, 7))
    const streamed = await runCli(['import', '--store', batching.url, large], { env })
    assert.equal(streamed.code, 0, streamed.stderr)
    assert.equal(streamed.stdout.toString().trim(), new NixStore(path.join(root, 'nix')).add(large))
    assert.doesNotMatch(streamed.stderr, /grpc-js was loaded/)
  })

  test('a daemon without batches (--no-batch-blobs): import and export-nar with a call per blob, the same path and bytes', async () => {
    const r = await runCli(['import', '--store', plain.url, tree])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString().trim(), nixPath)
    const back = await runCli(['export-nar', '--store', plain.url, nixPath])
    assert.equal(back.code, 0, back.stderr)
    assert.ok(back.stdout.equals(NixStore.dump(tree)), 'NAR through the daemon without batches differs')
    assert.equal(batched(plain.log(), 'ReadBlobs') + batched(plain.log(), 'PutBlobs') + batched(plain.log(), 'StatBlobs'), 0, 'a daemon with --no-batch-blobs served batches')
  })
})

describe('in process, over memory stores', () => {
  const tokens = new SecretSet<Rights>()
  const READ = 'read-token-0123456789abcdef'
  const WRITE = 'write-token-0123456789abcdef'
  tokens.add(READ, 'read')
  tokens.add(WRITE, 'write')
  const store = openMemoryStore()
  let daemon: Daemon
  let without: Daemon
  let raw: RawGrpc
  const log: string[] = []

  before(async () => {
    daemon = await startInProcess(store, parseListen(`unix:${path.join(root, 'm.sock')}`), (l) => log.push(l))
    without = await startInProcess(openMemoryStore(), parseListen(`unix:${path.join(root, 'n.sock')}`), () => {}, { ...DEFAULT_LIMITS, batchBlobs: false })
    raw = new RawGrpc(daemon.url)
  })
  after(async () => {
    raw?.close()
    await daemon?.shutdown()
    await without?.shutdown()
  })

  const stat = async (data: Uint8Array) => (await raw.unary('/tvix.castore.v1.BlobService/Stat', statBlobRequest.encode({ digest: b3(data), sendChunks: false, sendBao: false }))).code

  test('ReadBlobs: each blob in order, an absent one and one over max_blob_size said in its message', async () => {
    const small = randomBytes(3000, 7)
    const big = randomBytes(5000, 8)
    for (const b of [small, big]) await store.blobs.put(b)
    const absent = b3(randomBytes(10, 9))
    const r = await raw.serverStream('/tvix_store.ext.v1.BatchBlobService/ReadBlobs', readBlobsRequest.encode({ digests: [b3(small), absent, b3(big), b3(small)], maxBlobSize: 4000 }))
    assert.equal(r.code, Status.OK, r.details)
    const got = r.messages.map((m) => readBlobsResponse.decode(m))
    assert.deepEqual(got.map((m) => [m.index, m.state]), [[0, BlobState.FOUND], [1, BlobState.NOT_FOUND], [2, BlobState.LARGER], [3, BlobState.FOUND]])
    assert.ok(Buffer.from(got[0]!.data).equals(small) && Buffer.from(got[3]!.data).equals(small))

    // The client: the absent blob is undefined (callers say NOT_FOUND as without batches), the larger one LARGER.
    const client = openGrpcStore(daemon.url.replace('grpc+unix://', 'unix:'), daemon.url, '/nix/store')
    try {
      const blobs = client.blobs as GrpcBlobService
      const [a, b, c] = await Promise.all([blobs.readWhole(b3(small), 4000), blobs.readWhole(absent, 4000), blobs.readWhole(b3(big), 4000)])
      assert.ok(Buffer.from(a as Uint8Array).equals(small))
      assert.equal(b, undefined)
      assert.equal(c, LARGER)
    } finally {
      await client.close()
    }
  })

  test('StatBlobs: which blobs the daemon has, in order; the client asks has() in batches', async () => {
    const here = randomBytes(700, 14)
    await store.blobs.put(here)
    const absent = randomBytes(700, 15)
    const r = await raw.unary('/tvix_store.ext.v1.BatchBlobService/StatBlobs', statBlobsRequest.encode({ digests: [b3(absent), b3(here), b3(here)] }))
    assert.equal(r.code, Status.OK, r.details)
    assert.deepEqual([...statBlobsResponse.decode(r.response!).present], [0, 1, 1])
    const tooMany = await raw.unary('/tvix_store.ext.v1.BatchBlobService/StatBlobs', statBlobsRequest.encode({ digests: Array.from({ length: 1025 }, () => b3(here)) }))
    assert.equal(tooMany.code, Status.RESOURCE_EXHAUSTED)
    const client = openGrpcStore(daemon.url.replace('grpc+unix://', 'unix:'), daemon.url, '/nix/store')
    try {
      assert.deepEqual(await Promise.all([client.blobs.has(b3(here)), client.blobs.has(b3(absent))]), [true, false])
    } finally {
      await client.close()
    }
  })

  test('PutBlobs: a blob that does not match the digest sent refuses the batch, and nothing of it is stored', async () => {
    const good = randomBytes(1000, 11)
    const bad = randomBytes(1000, 12)
    const r = await raw.clientStream('/tvix_store.ext.v1.BatchBlobService/PutBlobs', [
      putBlobsRequest.encode({ digest: b3(good), data: good }),
      putBlobsRequest.encode({ digest: b3(randomBytes(1000, 13)), data: bad }),
    ])
    assert.equal(r.code, Status.INVALID_ARGUMENT)
    assert.match(r.details!, /blob 1 of the batch is .* not .* as sent/)
    assert.equal(await stat(good), Status.NOT_FOUND)
    assert.equal(await stat(bad), Status.NOT_FOUND)
  })

  test('hostile batches are refused within their bounds: too many digests, too many blobs or bytes, a blob over 1 MiB', async () => {
    const many = Array.from({ length: 1025 }, (_, i) => b3(Buffer.from(String(i))))
    const reads = await raw.serverStream('/tvix_store.ext.v1.BatchBlobService/ReadBlobs', readBlobsRequest.encode({ digests: many, maxBlobSize: 1 }))
    assert.equal(reads.code, Status.RESOURCE_EXHAUSTED)
    assert.equal(reads.messages.length, 0)

    // A batch that would never end is cut at 1,024 blobs.
    const tiny = Array.from({ length: 1100 }, (_, i) => Buffer.from(`tiny ${i}`))
    const endless = await raw.clientStream('/tvix_store.ext.v1.BatchBlobService/PutBlobs', tiny.map((t) => putBlobsRequest.encode({ digest: b3(t), data: t })))
    assert.equal(endless.code, Status.RESOURCE_EXHAUSTED)
    assert.equal(await stat(tiny[0]!), Status.NOT_FOUND)

    const mib = Array.from({ length: 5 }, (_, i) => Buffer.alloc(1 << 20, 20 + i))
    const heavy = await raw.clientStream('/tvix_store.ext.v1.BatchBlobService/PutBlobs', mib.map((m) => putBlobsRequest.encode({ digest: b3(m), data: m })))
    assert.equal(heavy.code, Status.RESOURCE_EXHAUSTED)
    assert.equal(await stat(mib[0]!), Status.NOT_FOUND)

    const over = Buffer.alloc((1 << 20) + 1, 30)
    const large = await raw.clientStream('/tvix_store.ext.v1.BatchBlobService/PutBlobs', [putBlobsRequest.encode({ digest: b3(over), data: over })])
    assert.equal(large.code, Status.INVALID_ARGUMENT)
    assert.equal(await stat(over), Status.NOT_FOUND)
  })

  test('a daemon without batches answers UNIMPLEMENTED; the client falls back, once per connection, with the same results', async () => {
    const r = await new RawGrpc(without.url).serverStream('/tvix_store.ext.v1.BatchBlobService/ReadBlobs', readBlobsRequest.encode({ digests: [b3(Buffer.from('x'))], maxBlobSize: 0 }))
    assert.equal(r.code, Status.UNIMPLEMENTED)
    const client = openGrpcStore(without.url.replace('grpc+unix://', 'unix:'), without.url, '/nix/store')
    try {
      const blobs = client.blobs as GrpcBlobService
      const data = Array.from({ length: 20 }, (_, i) => randomBytes(100 + i, 40 + i))
      const put = await Promise.all(data.map((d) => blobs.put(d)))
      assert.deepEqual(put.map((p) => toHex(p.digest)), data.map((d) => toHex(b3(d))))
      const read = await Promise.all(data.map((d) => blobs.readWhole(b3(d), 1000)))
      assert.deepEqual(read.map((x) => Buffer.from(x as Uint8Array).toString('hex')), data.map((d) => d.toString('hex')))
      assert.equal(await blobs.readWhole(b3(Buffer.from('absent')), 1000), undefined)
      assert.equal(await blobs.has(b3(data[0]!)), true)
      assert.equal(blobs.readsAtOnce, 8, 'the connection did not remember that the daemon has no batches')
    } finally {
      await client.close()
    }
  })

  test('putCopy: a buffer the caller fills again as soon as each call returns is stored as it was, with batches and without', async () => {
    for (const d of [daemon, without]) {
      const client = openGrpcStore(d.url.replace('grpc+unix://', 'unix:'), d.url, '/nix/store')
      try {
        const blobs = client.blobs as GrpcBlobService
        // One buffer for all, as an import's walk reads every small file into one; 300 puts fill more than one slab.
        const reused = Buffer.alloc(8192)
        const data = Array.from({ length: 300 }, (_, i) => randomBytes(1 + ((i * 997) % 8000), 600 + i))
        const puts = data.map((x) => {
          x.copy(reused)
          const p = blobs.putCopy(reused.subarray(0, x.length), { digest: b3(x) })
          reused.fill(0xee)
          return p
        })
        assert.deepEqual((await Promise.all(puts)).map((p) => toHex(p.digest)), data.map((x) => toHex(b3(x))))
        // The next round reuses the released slabs: what is read back is still each blob.
        const again = data.slice(0, 50).map((x) => Buffer.concat([x, Buffer.from('!')]))
        await Promise.all(again.map((x) => {
          x.copy(reused)
          const p = blobs.putCopy(reused.subarray(0, x.length), { digest: b3(x) })
          reused.fill(0xdd)
          return p
        }))
        for (const x of [...data, ...again]) assert.ok(Buffer.from((await blobs.readWhole(b3(x), 1 << 20)) as Uint8Array).equals(x))
      } finally {
        await client.close()
      }
    }
  })

  test('tokens: a read token reads in batches and may not PutBlobs (PERMISSION_DENIED, nothing stored)', async () => {
    const guarded = await startInProcess(openMemoryStore(), parseListen(`unix:${path.join(root, 'g.sock')}`), () => {}, DEFAULT_LIMITS, { tokens })
    const target = guarded.url.replace('grpc+unix://', 'unix:')
    const writer = openGrpcStore(target, guarded.url, '/nix/store', { token: WRITE })
    const reader = openGrpcStore(target, guarded.url, '/nix/store', { token: READ })
    try {
      const data = randomBytes(2000, 50)
      await writer.blobs.put(data)
      const got = await (reader.blobs as GrpcBlobService).readWhole(b3(data), 4000)
      assert.ok(Buffer.from(got as Uint8Array).equals(data))
      const other = randomBytes(2000, 51)
      await assert.rejects(reader.blobs.put(other), /may only read/)
      assert.equal(await writer.blobs.has(b3(other)), false)
    } finally {
      await writer.close()
      await reader.close()
      await guarded.shutdown()
    }
  })

  test('the daemon logged no failure but the refusals asked for', () => {
    for (const l of log) assert.match(l, /RESOURCE_EXHAUSTED|INVALID_ARGUMENT/, l)
  })
})
