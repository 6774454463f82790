/**
 * A lean server stream read more slowly than it arrives (a copy writing
 * to disk): its messages still come out of the DATA pieces as HTTP/2
 * gave them, never out of all that had piled up joined into one fresh
 * buffer (what the stream's own async iterator hands over), and the call
 * still ends with its status, or fails with it. Bare node:http2 server,
 * so what is sent, and when, is certain.
 */
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { H2Streams } from '../../src/backends/grpc/h2-stream.js'
import { Status } from '../../src/grpc/status.js'

/** Messages sent at once, each MESSAGE bytes: 4 MiB in all, well within the client's 16 MiB stream window. */
const MESSAGES = 256
const MESSAGE = 16 << 10

describe('a lean server stream read slowly', () => {
  let server: http2.Http2Server
  let target: string

  before(async () => {
    server = http2.createServer()
    server.on('stream', (stream, headers) => {
      stream.on('error', () => {})
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
      const failing = headers[':path'] === '/x.Y/Fail'
      stream.on('wantTrailers', () => stream.sendTrailers(failing ? { 'grpc-status': String(Status.DATA_LOSS), 'grpc-message': 'gone' } : { 'grpc-status': '0' }))
      const all = Buffer.alloc(MESSAGES * (5 + MESSAGE))
      for (let i = 0; i < MESSAGES; i++) {
        const at = i * (5 + MESSAGE)
        all.writeUInt32BE(MESSAGE, at + 1)
        all.fill(i & 0xff, at + 5, at + 5 + MESSAGE)
      }
      stream.end(all)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    target = `127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(() => new Promise<void>((resolve) => server.close(() => resolve())))

  test('every message, in order, none a view of a buffer of everything that waited', async () => {
    const client = new H2Streams(target, 1 << 20)
    try {
      let i = 0
      let largest = 0
      for await (const m of client.call('/x.Y/Z', new Uint8Array(0))) {
        // Everything has arrived by now: the stream's iterator would hand it over joined.
        if (i === 0) await sleep(300)
        assert.equal(m.length, MESSAGE)
        assert.ok(m.every((b) => b === (i & 0xff)), `message ${i}`)
        largest = Math.max(largest, m.buffer.byteLength)
        i++
      }
      assert.equal(i, MESSAGES)
      // HTTP/2 pieces come from socket reads of at most 64 KiB; the 4 MiB sent joined would be one buffer of MiBs.
      assert.ok(largest <= 256 << 10, `a message was a view of a ${largest}-byte buffer`)
    } finally {
      client.close()
    }
  })

  test('read slowly, a failing status still fails the call after its messages', async () => {
    const client = new H2Streams(target, 1 << 20)
    try {
      let i = 0
      await assert.rejects(
        (async () => {
          for await (const _ of client.call('/x.Y/Fail', new Uint8Array(0))) if (i++ === 0) await sleep(300)
        })(),
        (e: { code?: number; details?: string }) => e.code === Status.DATA_LOSS && e.details === 'gone',
      )
      assert.equal(i, MESSAGES)
    } finally {
      client.close()
    }
  })
})
