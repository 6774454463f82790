/**
 * A call the server refused unread (RST_STREAM REFUSED_STREAM before any
 * response, what a daemon closing an idle connection does to a call that
 * crossed its GOAWAY) is sent again by the lean HTTP/2 client, for both of
 * its call shapes; a server that refuses every time is one UNAVAILABLE.
 * The server here is bare node:http2, so the refusal is certain. So is a
 * connection closed as it arrives, before the server's SETTINGS (what a
 * daemon at its --max-connections does).
 */
import assert from 'node:assert/strict'
import http2 from 'node:http2'
import net, { type AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { H2Streams } from '../../src/backends/grpc/h2-stream.js'
import { Status } from '../../src/grpc/status.js'

describe('lean gRPC calls refused by the server', () => {
  let server: http2.Http2Server
  let target: string
  /** How many of the next requests to refuse. */
  let refuse = 0
  let requests = 0

  before(async () => {
    server = http2.createServer()
    server.on('stream', (stream) => {
      requests++
      stream.on('error', () => {})
      if (refuse > 0) {
        refuse--
        stream.close(http2.constants.NGHTTP2_REFUSED_STREAM)
        return
      }
      answerOk(stream)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    target = `127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(() => new Promise<void>((resolve) => server.close(() => resolve())))

  test('a refused call is sent again and answers (call and collect)', async () => {
    const client = new H2Streams(target, 1 << 20)
    try {
      for (const shape of ['call', 'collect'] as const) {
        refuse = 2
        requests = 0
        const got = shape === 'call' ? await collectAll(client.call('/x.Y/Z', new Uint8Array(0))) : await client.collect('/x.Y/Z', new Uint8Array(0), 1 << 20)
        assert.deepEqual(got?.map((m) => [...m]), [[1, 2, 3]], shape)
        assert.equal(requests, 3, shape)
      }
    } finally {
      client.close()
    }
  })

  test('a server that refuses every time: UNAVAILABLE after a few sends, not a loop', async () => {
    const client = new H2Streams(target, 1 << 20)
    try {
      for (const shape of ['call', 'collect'] as const) {
        refuse = 1000
        requests = 0
        const run = shape === 'call' ? collectAll(client.call('/x.Y/Z', new Uint8Array(0))) : client.collect('/x.Y/Z', new Uint8Array(0), 1 << 20)
        await assert.rejects(run, (e: { code: number; details: string }) => e.code === Status.UNAVAILABLE && /REFUSED_STREAM/.test(e.details))
        assert.equal(requests, 3, shape)
      }
    } finally {
      refuse = 0
      client.close()
    }
  })
})

describe('lean gRPC calls on a connection closed before the server spoke', () => {
  let server: http2.Http2Server
  let front: net.Server
  let target: string
  /** How many of the next connections to close as they arrive. */
  let close = 0
  let connections = 0

  before(async () => {
    server = http2.createServer()
    server.on('stream', (stream) => {
      stream.on('error', () => {})
      answerOk(stream)
    })
    front = net.createServer((socket) => {
      connections++
      if (close > 0) {
        close--
        return socket.destroy()
      }
      server.emit('connection', socket)
    })
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve))
    target = `127.0.0.1:${(front.address() as AddressInfo).port}`
  })
  after(async () => {
    await new Promise<void>((resolve) => front.close(() => resolve()))
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })

  test('the call goes again on a new connection and answers (call and collect)', async () => {
    for (const shape of ['call', 'collect'] as const) {
      const client = new H2Streams(target, 1 << 20)
      try {
        close = 2
        connections = 0
        const got = shape === 'call' ? await collectAll(client.call('/x.Y/Z', new Uint8Array(0))) : await client.collect('/x.Y/Z', new Uint8Array(0), 1 << 20)
        assert.deepEqual(got?.map((m) => [...m]), [[1, 2, 3]], shape)
        assert.equal(connections, 3, shape)
      } finally {
        client.close()
      }
    }
  })

  test('a server that closes every connection: UNAVAILABLE after a few, not a loop', async () => {
    const client = new H2Streams(target, 1 << 20)
    try {
      close = 1000
      connections = 0
      await assert.rejects(client.collect('/x.Y/Z', new Uint8Array(0), 1 << 20), (e: { code: number }) => e.code === Status.UNAVAILABLE)
      assert.equal(connections, 3)
    } finally {
      close = 0
      client.close()
    }
  })
})

/** Reads the request, then answers one message of bytes 1, 2, 3 and status OK. */
function answerOk(stream: http2.ServerHttp2Stream): void {
  stream.resume()
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
    stream.end(Buffer.from([0, 0, 0, 0, 3, 1, 2, 3]))
  })
}

async function collectAll(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const m of it) out.push(m)
  return out
}
