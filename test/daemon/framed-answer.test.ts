import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { test } from 'node:test'
import { FramedAnswer, serverStream } from '../../src/daemon/calls.js'
import { BATCH_SERVICE, serviceDefinition } from '../../src/grpc/definitions.js'
import { BlobState, FRAMED_HEAD_MAX, frameReadBlobsResponse, type ReadBlobsResponse, readBlobsResponse } from '../../src/grpc/batch-messages.js'
import { randomBytes } from '../helpers/trees.js'

/** `messages` framed in one buffer, as the daemon's ReadBlobs answers blobs at hand. */
function framed(messages: ReadBlobsResponse[]): Buffer {
  const out = Buffer.alloc(messages.reduce((n, m) => n + FRAMED_HEAD_MAX + m.data.length, 0))
  let at = 0
  for (const m of messages) {
    at = frameReadBlobsResponse(out, at, m.index, m.state, m.data.length)
    out.set(m.data, at)
    at += m.data.length
  }
  return out.subarray(0, at)
}

test('a framed answer on a call whose HTTP/2 stream cannot be found goes through grpc-js a message at a time, and its buffer is released after the last write', async () => {
  const messages: ReadBlobsResponse[] = [
    { index: 0, state: BlobState.FOUND, data: randomBytes(3000, 1) },
    { index: 1, state: BlobState.NOT_FOUND, data: new Uint8Array(0) },
    { index: 2, state: BlobState.FOUND, data: randomBytes(200, 2) },
  ]
  const serialize = serviceDefinition(BATCH_SERVICE, 'server').ReadBlobs!.responseSerialize
  const written: Buffer[] = []
  let released = false
  let releasedEarly = false
  let ended!: () => void
  const end = new Promise<void>((resolve) => (ended = resolve))
  // As grpc-js's call (a Writable): a message is serialized only once the write before it called back.
  const queue: Array<{ msg: Uint8Array; cb?: () => void }> = []
  let busy = false
  const next = () => {
    const w = queue.shift()
    busy = w !== undefined
    if (!w) return
    releasedEarly ||= released
    written.push(Buffer.from(serialize(w.msg)))
    setImmediate(() => {
      w.cb?.()
      next()
    })
  }
  // What serverStream asks of a grpc-js call; no HTTP/2 stream under it, as a grpc-js we do not know would hide it.
  const call = Object.assign(new EventEmitter(), {
    request: Buffer.alloc(0),
    cancelled: false,
    write(msg: Uint8Array, cb?: () => void) {
      queue.push({ msg, cb })
      if (!busy) next()
      return true
    },
    end: () => ended(),
  })
  const handler = serverStream('Test/ReadBlobs', () => {}, (b) => b, () => new FramedAnswer(framed(messages), () => (released = true)))
  handler(call as never)
  await end
  while (queue.length > 0 || busy) await new Promise((resolve) => setImmediate(resolve))
  assert.equal(released, true)
  assert.equal(releasedEarly, false, 'the buffer was released while grpc-js had messages of it still to serialize')
  assert.deepEqual(written, messages.map((m) => Buffer.from(readBlobsResponse.encode(m))))
})
