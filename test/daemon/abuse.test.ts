/**
 * Issue 16's abusive clients, against one daemon process serving gRPC and
 * the HTTP binary cache (with uploads) under small limits: floods of
 * connections, streams never read, uploads never finished, uploads that
 * never end (at full speed, or a trickle). Each case bounds the daemon's
 * peak RSS (rssBounded, which also probes it with a Stat meanwhile) and
 * runs a well-behaved round trip (a blob Put and Read over gRPC, a narinfo
 * and its NAR over HTTP) while the abuse goes on, or once the abusers are
 * gone where the abuse is taking every connection. Deep and wide trees:
 * test/daemon/abuse-trees.test.ts.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import http2 from 'node:http2'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test, type TestContext } from 'node:test'
import { openStore } from '../../src/backends/open-store.js'
import { bytesEqual } from '../../src/castore/digest.js'
import { eventually, field1, idleConnections, rawClient, rawClientStream, rssBounded, writeAll } from '../helpers/attack.js'
import { runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { nar, regular, str, toks } from '../helpers/nar.js'
import { snapshot, tempFiles } from '../helpers/snapshot.js'
import { randomBytes as seededBytes } from '../helpers/trees.js'

const MAX_CONNECTIONS = 64
const CONNECTIONS = 300
const MiB = 1 << 20
const WELL_BEHAVED = 'a well-behaved client\n'

describe('a daemon under abusive clients, gRPC and HTTP', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-abuse-'))
  const store = path.join(root, 'store')
  let daemon: RunningDaemon
  let cache: string
  let cachePort: number
  let grpcPort: number
  /** The seeded small path's hash part, and the NAR of a 32 MiB file's path (its URL and size). */
  let smallHash: string
  let bigNar: { url: string; size: number }
  const cleanups: Array<() => void> = []

  const attack = (t: TestContext, what: string, run: () => Promise<void>, cleanup?: () => void) =>
    rssBounded(t, { pid: daemon.proc.pid!, url: daemon.url }, what, run, cleanup)

  /** Store objects, temp files aside: what a refused or cut upload must leave as it was. */
  const objects = () => snapshot(store).filter((f) => !f.startsWith('tmp/') && !f.startsWith('locks/'))
  /** The upload left nothing: no temp files (once the daemon has cleaned up), the objects as they were. */
  async function nothingStored(stored: string[]): Promise<void> {
    assert.ok(await eventually(() => tempFiles(store).length === 0), `temp files left: ${tempFiles(store).join(' ')}`)
    assert.deepEqual(objects(), stored)
  }

  /** A blob Put and Read over gRPC (new connections), and a narinfo and its NAR over HTTP: the bytes Nix's format gives. */
  async function roundTrip(): Promise<void> {
    const client = await openStore({ url: daemon.url })
    try {
      // The same bytes each time: stored by the first round trip, so later ones leave the store's objects as they were.
      const data = seededBytes(64 << 10, 16)
      const { digest } = await client.blobs.put(data)
      const chunks: Uint8Array[] = []
      for await (const c of (await client.blobs.open(digest))!) chunks.push(c)
      assert.ok(bytesEqual(Buffer.concat(chunks), data), 'the blob read back is the one put')
    } finally {
      await client.close()
    }
    const narinfo = await fetch(`${cache}/${smallHash}.narinfo`)
    assert.equal(narinfo.status, 200)
    const url = /^URL: (\S+)$/m.exec(await narinfo.text())![1]!
    const got = Buffer.from(await (await fetch(`${cache}/${url}`)).arrayBuffer())
    assert.ok(got.equals(nar(regular(WELL_BEHAVED))), 'the NAR served is the one Nix would write')
  }

  /** A counter or gauge of the cache's /metrics (0 when absent). */
  async function metric(name: string, labels: string): Promise<number> {
    const text = await (await fetch(`${cache}/metrics`)).text()
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((kv) => l.includes(kv)))
    return line ? Number(line.split(' ').at(-1)) : 0
  }

  before(async () => {
    fs.writeFileSync(path.join(root, 'small'), WELL_BEHAVED)
    const big = path.join(root, 'big')
    fs.writeFileSync(big, randomBytes(32 * MiB))
    const imported = await runCli(['import', '--store', store, path.join(root, 'small'), big])
    assert.equal(imported.code, 0, imported.stderr)
    fs.rmSync(big)
    const [small, bigPath] = imported.stdout.toString().trim().split('\n')
    smallHash = path.basename(small!).slice(0, 32)
    daemon = await startDaemon(store, '127.0.0.1:0', [
      '--max-connections', String(MAX_CONNECTIONS), '--idle-timeout', '5s', '--call-idle-timeout', '1s', '--max-call-time', '5s',
      '--max-transfers', '8', '--max-nar-size', '16M', '--http-listen', '127.0.0.1:0', '--http-upload',
    ])
    cache = /Nix binary cache at (http:\/\/\S+)/.exec(daemon.log())![1]!
    cachePort = Number(new URL(cache).port)
    grpcPort = Number(/:(\d+)$/.exec(daemon.url)![1])
    const narinfo = await (await fetch(`${cache}/${path.basename(bigPath!).slice(0, 32)}.narinfo`)).text()
    bigNar = { url: /^URL: (\S+)$/m.exec(narinfo)![1]!, size: Number(/^NarSize: (\d+)$/m.exec(narinfo)![1]) }
    await roundTrip()
  })
  after(async () => {
    for (const c of cleanups) c()
    await daemon?.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test(`${CONNECTIONS} gRPC connections at once: those beyond --max-connections are closed as they arrive, the rest served; then a new client is`, async (t) => {
    const sessions: http2.ClientHttp2Session[] = []
    await attack(t, `${CONNECTIONS} gRPC connections`, async () => {
      const outcomes = await Promise.all(
        Array.from({ length: CONNECTIONS }, () => {
          const s = http2.connect(`http://127.0.0.1:${grpcPort}`)
          s.on('error', () => {})
          sessions.push(s)
          // Accepted: the daemon's SETTINGS arrive. Refused: the socket closes first.
          return new Promise<'accepted' | 'refused'>((resolve) => {
            s.once('remoteSettings', () => resolve('accepted'))
            s.once('close', () => resolve('refused'))
          })
        }),
      )
      const accepted = sessions.filter((_, i) => outcomes[i] === 'accepted')
      // The probe holds a connection of its own (and a closing one may still count for a moment).
      assert.ok(accepted.length <= MAX_CONNECTIONS && accepted.length >= MAX_CONNECTIONS - 8, `${accepted.length} accepted`)
      assert.match(daemon.log(), new RegExp(`refusing connections: ${MAX_CONNECTIONS} are open \\(--max-connections\\)`))
      // Each accepted one is served: a Stat of an absent blob is NOT_FOUND.
      const statuses = await Promise.all(accepted.map((s) => h2Unary(s, '/tvix.castore.v1.BlobService/Stat', field1(Buffer.alloc(32, 0xee)))))
      assert.deepEqual(new Set(statuses), new Set(['5']))
    }, () => {
      for (const s of sessions) s.destroy()
    })
    await roundTrip()
  })

  test(`${CONNECTIONS} idle HTTP connections: those beyond --max-connections refused, the rest closed after --idle-timeout; then a client is served`, async (t) => {
    let sockets: net.Socket[] = []
    await attack(t, `${CONNECTIONS} idle HTTP connections`, async () => {
      const idle = idleConnections(cachePort, CONNECTIONS)
      sockets = idle.sockets
      assert.ok(await eventually(() => idle.closed() === CONNECTIONS, 60_000), `${CONNECTIONS - idle.closed()} of ${CONNECTIONS} still open`)
      assert.match(daemon.log(), new RegExp(`refusing HTTP connections: ${MAX_CONNECTIONS} are open \\(--max-connections\\)`))
    }, () => {
      for (const s of sockets) s.destroy()
    })
    await roundTrip()
  })

  test('32 GETs of a 32 MiB NAR that never read: cut after --call-idle-timeout, RSS bounded, others served meanwhile', async (t) => {
    const GETS = 32
    const sockets: net.Socket[] = []
    const before = await metric('tvix_http_requests_total', 'route="nar",status="200"')
    const bytesBefore = await metric('tvix_http_response_bytes_total', 'route="nar"')
    await attack(t, `${GETS} stalled NAR GETs`, async () => {
      for (let i = 0; i < GETS; i++) {
        const s = net.connect(cachePort, '127.0.0.1', () => s.write(`GET /${bigNar.url} HTTP/1.1\r\nHost: cache\r\n\r\n`))
        s.on('error', () => {})
        // Never read: the daemon's writes stop once the kernel's buffers are full.
        s.pause()
        sockets.push(s)
      }
      await roundTrip()
      // Every response ends (a request is counted when its response closes), each cut short.
      const ended = await eventually(async () => (await metric('tvix_http_requests_total', 'route="nar",status="200"')) - before >= GETS, 60_000)
      assert.ok(ended, 'the stalled GETs were not all cut')
      const sent = (await metric('tvix_http_response_bytes_total', 'route="nar"')) - bytesBefore
      assert.ok(sent < GETS * bigNar.size, `${sent} bytes sent: some stalled GET got its whole NAR`)
      assert.equal(await metric('tvix_http_nar_renders_in_flight', ''), 0)
    }, () => {
      for (const s of sockets) s.destroy()
    })
  })

  test('16 PUTs of a NAR that send 1 MiB and stall: cut after --call-idle-timeout, nothing stored, no temp files', async (t) => {
    const PUTS = 16
    const sockets: net.Socket[] = []
    const stored = objects()
    await attack(t, `${PUTS} stalled NAR PUTs`, async () => {
      const answers = Array.from({ length: PUTS }, (_, i) => {
        const body = narClaiming(8 * MiB)
        const s = net.connect(cachePort, '127.0.0.1', () => {
          s.write(`PUT /nar/${fakeFileHash(i)}.nar HTTP/1.1\r\nHost: cache\r\nContent-Length: ${body.head.length + 8 * MiB + 8}\r\n\r\n`)
          s.write(Buffer.concat([body.head, randomBytes(MiB)]))
        })
        sockets.push(s)
        return answered(s)
      })
      await roundTrip()
      // Cut, not answered: nobody is left to read an answer to a request never finished.
      assert.deepEqual(new Set(await Promise.all(answers)), new Set(['']))
      await nothingStored(stored)
    }, () => {
      for (const s of sockets) s.destroy()
    })
  })

  test('a PUT that sends forever: 413 at --max-nar-size, the connection closed, nothing stored', async (t) => {
    const stored = objects()
    await attack(t, 'a PUT sending forever', async () => {
      const body = narClaiming(2 ** 40)
      const s = net.connect(cachePort, '127.0.0.1')
      cleanups.push(() => s.destroy())
      const answer = answered(s)
      await new Promise<void>((resolve) => s.once('connect', resolve))
      s.write(`PUT /nar/${fakeFileHash(99)}.nar HTTP/1.1\r\nHost: cache\r\nContent-Length: ${body.head.length + 2 ** 40 + 8}\r\n\r\n`)
      s.write(body.head)
      const zeros = Buffer.alloc(MiB)
      let done = false
      void answer.finally(() => (done = true))
      const sending = (async () => {
        while (!done && !s.destroyed) if (!s.write(zeros)) await new Promise((r) => (s.once('drain', r), s.once('close', r)))
      })()
      await roundTrip()
      assert.match(await answer, /^HTTP\/1\.1 413 /)
      await sending
      await nothingStored(stored)
    })
  })

  test('a PUT that trickles (never idle): cut at --max-call-time, nothing stored', async (t) => {
    const stored = objects()
    await attack(t, 'a trickling PUT', async () => {
      const body = narClaiming(MiB)
      const s = net.connect(cachePort, '127.0.0.1', () => {
        s.write(`PUT /nar/${fakeFileHash(98)}.nar HTTP/1.1\r\nHost: cache\r\nContent-Length: ${body.head.length + MiB + 8}\r\n\r\n`)
        s.write(body.head)
      })
      cleanups.push(() => s.destroy())
      // 64 bytes every 200 ms: well within --call-idle-timeout, a MiB would take an hour.
      const trickle = setInterval(() => s.destroyed || s.write(Buffer.alloc(64)), 200)
      try {
        await roundTrip()
        assert.equal(await answered(s), '')
      } finally {
        clearInterval(trickle)
      }
      assert.match(daemon.log(), /PUT \/nar\/\S+ cut: it took longer than 5 s \(--max-call-time\)/)
      await nothingStored(stored)
    })
  })

  test('a gRPC blob Put that sends forever: RESOURCE_EXHAUSTED at --max-nar-size, nothing stored', async (t) => {
    const stored = objects()
    await attack(t, 'a gRPC Put sending forever', async () => {
      await withPut(daemon.url, async (put) => {
        const chunk = field1(randomBytes(MiB))
        await Promise.all([writeAll(put.call, forever(chunk), put.result), roundTrip()])
        const r = await put.result
        assert.equal(r.code, 8, r.details) // RESOURCE_EXHAUSTED
        assert.match(r.details!, /larger than --max-nar-size/)
      })
      await nothingStored(stored)
    })
  })

  test('a gRPC blob Put that trickles (never idle): DEADLINE_EXCEEDED at --max-call-time, nothing stored', async (t) => {
    const stored = objects()
    await attack(t, 'a trickling gRPC Put', async () => {
      await withPut(daemon.url, async (put) => {
        // Past the put window's 1 MiB first, so that the blob is written as it comes; then 1 KiB every 200 ms.
        put.call.write(field1(randomBytes(2 * MiB)))
        const trickle = setInterval(() => put.call.write(field1(randomBytes(1024))), 200)
        try {
          await roundTrip()
          const r = await put.result
          assert.equal(r.code, 4, r.details) // DEADLINE_EXCEEDED
          assert.match(r.details!, /took longer than 5 s \(--max-call-time\)/)
        } finally {
          clearInterval(trickle)
        }
      })
      await nothingStored(stored)
    })
  })
})

/** A blob Put on a connection of its own, closed after `use`. */
async function withPut(url: string, use: (put: ReturnType<typeof rawClientStream>) => Promise<void>): Promise<void> {
  const client = rawClient(url, { 'grpc.use_local_subchannel_pool': 1 })
  try {
    await use(rawClientStream(client, '/tvix.castore.v1.BlobService/Put'))
  } finally {
    client.close()
  }
}

/** A unary gRPC call on a raw HTTP/2 session: the grpc-status it ends with. */
function h2Unary(session: http2.ClientHttp2Session, method: string, msg: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const stream = session.request({ ':method': 'POST', ':path': method, 'content-type': 'application/grpc', te: 'trailers' })
    let status = ''
    stream.on('response', (h) => (status = String(h['grpc-status'] ?? status)))
    stream.on('trailers', (h) => (status = String(h['grpc-status'] ?? status)))
    stream.on('error', () => {})
    stream.on('close', () => resolve(status || `rst ${stream.rstCode}`))
    stream.resume()
    const head = Buffer.alloc(5)
    head.writeUInt32BE(msg.length, 1)
    stream.end(Buffer.concat([head, msg]))
  })
}

/** The start of a NAR of one regular file that claims `size` bytes (its contents follow). */
function narClaiming(size: number): { head: Buffer } {
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(size))
  return { head: Buffer.concat([str('nix-archive-1'), toks('(', 'type', 'regular', 'contents'), len]) }
}

/** A name for an uploaded NAR: 52 nixbase32 characters (no NAR has that hash; the upload is cut or refused first). */
function fakeFileHash(i: number): string {
  return String(i).padStart(52, '0')
}

/** What the server answered on `s` before it closed ('' when it closed without a word). */
function answered(s: net.Socket): Promise<string> {
  let got = ''
  s.on('data', (c: Buffer) => (got += c.toString('latin1')))
  s.on('error', () => {})
  return new Promise((resolve) => s.once('close', () => resolve(got)))
}

function* forever(msg: Buffer): Generator<Buffer> {
  for (;;) yield msg
}
