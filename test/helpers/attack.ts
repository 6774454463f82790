/**
 * Scripted gRPC clients that misbehave against a daemon process, and a
 * watcher measuring what that costs: the daemon's RSS (from /proc) and the
 * latency a well-behaved client sees meanwhile.
 */
import { Client, type ClientWritableStream, credentials, type ChannelOptions, type ServiceError } from '@grpc/grpc-js'
import http2 from 'node:http2'
import net from 'node:net'
import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import type { TestContext } from 'node:test'
import { rssKiB } from './spawn.js'

const raw = (b: Buffer) => b

/** A grpc-js client that sends and receives raw message bytes. */
export function rawClient(url: string, options: ChannelOptions = {}): Client {
  const target = url.replace(/^grpc\+http:\/\//, '').replace(/^grpc\+unix:\/\//, 'unix:')
  return new Client(target, credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20, 'grpc.max_receive_message_length': 64 << 20, ...options })
}

export function rawUnary(client: Client, method: string, body: Buffer): Promise<{ code: number; details?: string; body?: Buffer }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(method, raw, raw, body, (err: ServiceError | null, res?: Buffer) => resolve(err ? { code: err.code, details: err.details } : { code: 0, body: res }))
  })
}

/** A client stream whose writes the test drives; `result` settles with the call's status. */
export function rawClientStream(client: Client, method: string) {
  let call!: ClientWritableStream<Buffer>
  const result = new Promise<{ code: number; details?: string; body?: Buffer }>((resolve) => {
    call = client.makeClientStreamRequest(method, raw, raw, (err: ServiceError | null, res?: Buffer) => resolve(err ? { code: err.code, details: err.details } : { code: 0, body: res }))
  })
  return { call, result }
}

/** A protobuf message with one length-delimited field 1: a BlobChunk, or a digest request. */
export function field1(data: Uint8Array): Buffer {
  const len: number[] = []
  for (let n = data.length; ; n >>>= 7) {
    if (n < 0x80) {
      len.push(n)
      break
    }
    len.push((n & 0x7f) | 0x80)
  }
  return Buffer.concat([Buffer.from([0x0a, ...len]), data])
}

export interface Watch {
  /** Stops sampling; peak RSS in MiB over the attack, and the probe client's latencies. */
  stop(): Promise<{ peakRssMiB: number; probes: number; medianMs: number; maxMs: number }>
}

/**
 * Samples the daemon's RSS and times a well-behaved call (a Stat of an
 * absent blob: one round trip through the daemon's event loop) back to
 * back until stopped. Its own channel, so it shares no connection with the
 * attack.
 */
export function watchDaemon(pid: number, url: string): Watch {
  let peak = rssKiB(pid) ?? 0
  const sampler = setInterval(() => (peak = Math.max(peak, rssKiB(pid) ?? 0)), 50)
  const client = rawClient(url)
  const latencies: number[] = []
  let stopped = false
  const probing = (async () => {
    while (!stopped) {
      const t = performance.now()
      await rawUnary(client, '/tvix.castore.v1.BlobService/Stat', field1(Buffer.alloc(32, 0xee)))
      latencies.push(performance.now() - t)
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  return {
    async stop() {
      stopped = true
      await probing
      clearInterval(sampler)
      peak = Math.max(peak, rssKiB(pid) ?? 0)
      client.close()
      const sorted = [...latencies].sort((a, b) => a - b)
      return {
        peakRssMiB: Math.round(peak / 1024),
        probes: sorted.length,
        medianMs: Math.round(sorted[Math.floor(sorted.length / 2)] ?? NaN),
        maxMs: Math.round(sorted.at(-1) ?? NaN),
      }
    },
  }
}

/** What every abusive-client test holds the daemon to (issue 16). */
export const RSS_LIMIT_MIB = 200

/**
 * Runs `attack` while a well-behaved client probes the daemon at `url`
 * (`cleanup` then ends the attack's connections); reports the daemon's
 * peak RSS and the probe's latency, and bounds that peak. Returns the peak in MiB.
 */
export async function rssBounded(t: TestContext, daemon: { pid: number; url: string }, what: string, attack: () => Promise<void>, cleanup: () => void = () => {}): Promise<number> {
  const watch = watchDaemon(daemon.pid, daemon.url)
  let w
  try {
    await attack()
  } finally {
    cleanup()
    w = await watch.stop()
    t.diagnostic(`${what}: daemon peak RSS ${w.peakRssMiB} MiB; Stat latency median ${w.medianMs} ms, max ${w.maxMs} ms (${w.probes} probes)`)
  }
  assert.ok(w.peakRssMiB <= RSS_LIMIT_MIB, `daemon peak RSS ${w.peakRssMiB} MiB > ${RSS_LIMIT_MIB} MiB`)
  return w.peakRssMiB
}

/** Polls `cond` until it holds or `ms` pass; true if it held. */
export async function eventually(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await cond()) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return cond()
}

/** Writes every message with backpressure; resolves when all are handed to grpc-js or the call ended. */
export async function writeAll(call: ClientWritableStream<Buffer>, messages: Iterable<Buffer>, result: Promise<unknown>): Promise<void> {
  let done = false
  void result.finally(() => (done = true))
  for (const m of messages) {
    if (done) return
    if (!call.write(m)) await Promise.race([new Promise((r) => call.once('drain', r)), result])
  }
}

/**
 * A gRPC call over a raw HTTP/2 session that never reads its response: no
 * WINDOW_UPDATE is ever sent, so after the 64 KiB window the server's
 * writes stall (grpc-js clients read ahead into their own buffers). Sends
 * `messages` (gRPC-framed) and, if `end`, half-closes. Resolves `closed`
 * with the stream's RST code or the grpc-status the server sent.
 */
export function stalledCall(session: http2.ClientHttp2Session, method: string, messages: Buffer[], end: boolean): { closed: Promise<string> } {
  const stream = session.request({ ':method': 'POST', ':path': method, 'content-type': 'application/grpc', te: 'trailers' })
  let status = ''
  stream.on('trailers', (t) => (status = `grpc-status ${t['grpc-status']}`))
  stream.on('response', (h) => {
    if (h['grpc-status'] !== undefined) status = `grpc-status ${h['grpc-status']}`
  })
  stream.on('error', () => {})
  for (const m of messages) {
    const head = Buffer.alloc(5)
    head.writeUInt32BE(m.length, 1)
    stream.write(Buffer.concat([head, m]))
  }
  if (end) stream.end()
  stream.pause()
  return { closed: new Promise((resolve) => stream.on('close', () => resolve(status || `rst ${stream.rstCode}`))) }
}

/** A raw HTTP/2 session to a daemon's TCP URL. */
export function h2Session(url: string): http2.ClientHttp2Session {
  const s = http2.connect(url.replace(/^grpc\+http:/, 'http:'))
  s.on('error', () => {})
  return s
}

/**
 * `n` TCP connections to 127.0.0.1:`port` that send nothing; each reads
 * what the server sends (gRPC's SETTINGS), or its close is never seen.
 * `closed()` counts those the server closed (refused, or timed out).
 */
export function idleConnections(port: number, n: number): { sockets: net.Socket[]; closed(): number } {
  let closed = 0
  const sockets = Array.from({ length: n }, () => {
    const s = net.connect(port, '127.0.0.1')
    s.on('error', () => {})
    s.resume()
    s.on('close', () => closed++)
    return s
  })
  return { sockets, closed: () => closed }
}
