/**
 * Stalled and idle clients against a daemon process with small limits:
 * Reads that never read, Puts that stop sending, and a flood of idle
 * connections. The daemon must cancel what stalls, refuse connections
 * beyond its cap, close idle ones, keep its RSS bounded and go on
 * answering a well-behaved client. Each attack prints the daemon's peak
 * RSS and that client's latency (diagnostics, not assertions).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test, type TestContext } from 'node:test'
import type { Client } from '@grpc/grpc-js'
import { b3 } from '../../src/castore/digest.js'
import { eventually, field1, h2Session, idleConnections, rawClient, rawClientStream, rawUnary, rssBounded as rssBoundedBy, stalledCall, writeAll } from '../helpers/attack.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { tempFiles } from '../helpers/snapshot.js'

const CALL_IDLE = '2s'

describe('daemon limits against stalled and idle clients', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-limits-'))
  const store = path.join(root, 'store')
  let daemon: RunningDaemon
  let port: number
  const blob = randomBytes(48 << 20)
  const digest = b3(blob)
  const clients: Client[] = []
  const connect = () => {
    // Each its own connection: grpc-js shares channels with equal options unless told not to.
    const c = rawClient(daemon.url, { 'grpc.use_local_subchannel_pool': 1 })
    clients.push(c)
    return c
  }
  const rssBounded = (t: TestContext, what: string, attack: () => Promise<void>, cleanup?: () => void) =>
    rssBoundedBy(t, { pid: daemon.proc.pid!, url: daemon.url }, what, attack, cleanup)

  before(async () => {
    port = await freePort()
    daemon = await startDaemon(store, `127.0.0.1:${port}`, ['--max-transfers', '8', '--call-idle-timeout', CALL_IDLE, '--max-connections', '64', '--idle-timeout', '2s'])
    const c = rawClient(daemon.url)
    const put = rawClientStream(c, '/tvix.castore.v1.BlobService/Put')
    const chunks = []
    for (let i = 0; i < blob.length; i += 1 << 20) chunks.push(field1(blob.subarray(i, i + (1 << 20))))
    await writeAll(put.call, chunks, put.result)
    put.call.end()
    assert.equal((await put.result).code, 0)
    c.close()
  })
  after(async () => {
    for (const c of clients) c.close()
    await daemon?.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test('64 Reads of a 48 MiB blob that never read: cancelled after the call idle timeout, RSS bounded', async (t) => {
    const READS = 64
    const sessions = Array.from({ length: 4 }, () => h2Session(daemon.url))
    await rssBounded(t, `${READS} stalled Reads`, async () => {
      const ends: Array<Promise<string>> = []
      for (let i = 0; i < READS; i++) ends.push(stalledCall(sessions[i % sessions.length]!, '/tvix.castore.v1.BlobService/Read', [field1(digest)], true).closed)
      // Every stalled Read ends: each holds a transfer slot for at most the call idle timeout.
      const ended = await Promise.all(ends)
      assert.deepEqual(new Set(ended), new Set(['rst 8']))
      assert.match(daemon.log(), /BlobService\/Read failed: DEADLINE_EXCEEDED: the client read nothing for 2 s/)
      assert.equal((await rawUnary(connect(), '/tvix.castore.v1.BlobService/Stat', field1(digest))).code, 0)
    }, () => {
      for (const s of sessions) s.destroy()
    })
  })

  test('40 Puts that send 3 MiB and then nothing: cancelled after the call idle timeout, nothing stored, RSS bounded', async (t) => {
    const PUTS = 40
    // Made before any connection opens: 120 MiB of fresh random bytes made between the
    // connects and the first frames kept this process from sending its HTTP/2 settings
    // on a loaded machine, and the daemon rightly closed those connections as silent.
    const chunks = Array.from({ length: 3 }, () => field1(randomBytes(1 << 20)))
    await rssBounded(t, `${PUTS} stalled Puts`, async () => {
      const conns = Array.from({ length: 4 }, connect)
      const results = []
      for (let i = 0; i < PUTS; i++) {
        const put = rawClientStream(conns[i % conns.length]!, '/tvix.castore.v1.BlobService/Put')
        for (const chunk of chunks) put.call.write(chunk)
        results.push(put.result)
      }
      const codes = (await Promise.all(results)).map((r) => r.code)
      assert.deepEqual(new Set(codes), new Set([4]), `codes: ${codes.join(' ')}`) // DEADLINE_EXCEEDED
      assert.match(daemon.log(), /BlobService\/Put failed: DEADLINE_EXCEEDED: the client sent nothing for 2 s/)
      assert.ok(await eventually(() => tempFiles(store).length === 0))
    })
  })

  test('300 idle TCP connections: those beyond --max-connections refused, the rest closed after --idle-timeout', async (t) => {
    const CONNS = 300
    let sockets: net.Socket[] = []
    await rssBounded(t, `${CONNS} idle connections`, async () => {
      const idle = idleConnections(port, CONNS)
      sockets = idle.sockets
      // Idle means no call: all are closed by the daemon, within the idle timeout (and some slack) of the last.
      assert.ok(await eventually(() => idle.closed() === CONNS, 30_000), `${CONNS - idle.closed()} of ${CONNS} still open`)
      assert.match(daemon.log(), /refusing connections: 64 are open/)
    }, () => {
      for (const s of sockets) s.destroy()
    })
  })
})
