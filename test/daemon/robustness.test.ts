import assert from 'node:assert/strict'
import { Client, credentials, status } from '@grpc/grpc-js'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { openLocalStore } from '../../src/backends/local/index.js'
import { startDaemon, type Daemon } from '../../src/daemon/server.js'
import { parseListen } from '../../src/daemon/listen.js'
import type { Store } from '../../src/store/store.js'

/**
 * Raw bytes at the daemon, in process: malformed and oversized messages
 * must be refused with the right status and never take the server down.
 */
describe('daemon robustness against malformed input', () => {
  let store: Store
  let daemon: Daemon
  let client: Client
  const logs: string[] = []
  const raw = (b: Buffer) => b

  before(async () => {
    store = await openLocalStore(fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-robust-')))
    daemon = await startDaemon(store, parseListen('127.0.0.1:0'), (l) => logs.push(l))
    client = new Client(daemon.url.replace('grpc+http://', ''), credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 })
  })
  after(async () => {
    client.close()
    await daemon.shutdown()
  })

  const unary = (method: string, body: Buffer) =>
    new Promise<{ code: number; details?: string }>((resolve) => {
      client.makeUnaryRequest(method, raw, raw, body, (err) => resolve(err ? { code: err.code, details: err.details } : { code: status.OK }))
    })

  const clientStream = (method: string, bodies: Buffer[]) =>
    new Promise<{ code: number; details?: string }>((resolve) => {
      const call = client.makeClientStreamRequest(method, raw, raw, (err) => resolve(err ? { code: err.code, details: err.details } : { code: status.OK }))
      for (const b of bodies) call.write(b)
      call.end()
    })

  const serverStream = (method: string, body: Buffer) =>
    new Promise<{ code: number; messages: number }>((resolve) => {
      let messages = 0
      const call = client.makeServerStreamRequest(method, raw, raw, body)
      call.on('data', () => messages++)
      call.on('error', (e: { code: number }) => resolve({ code: e.code, messages }))
      call.on('end', () => resolve({ code: status.OK, messages }))
    })

  // A truncated varint / length: not a valid protobuf message at all.
  const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])

  test('garbage bytes: INVALID_ARGUMENT on every method', async () => {
    assert.equal((await unary('/tvix.castore.v1.BlobService/Stat', garbage)).code, status.INVALID_ARGUMENT)
    assert.equal((await serverStream('/tvix.castore.v1.BlobService/Read', garbage)).code, status.INVALID_ARGUMENT)
    assert.equal((await clientStream('/tvix.castore.v1.BlobService/Put', [garbage])).code, status.INVALID_ARGUMENT)
    assert.equal((await serverStream('/tvix.castore.v1.DirectoryService/Get', garbage)).code, status.INVALID_ARGUMENT)
    assert.equal((await clientStream('/tvix.castore.v1.DirectoryService/Put', [garbage])).code, status.INVALID_ARGUMENT)
    assert.equal((await unary('/tvix.store.v1.PathInfoService/Get', garbage)).code, status.INVALID_ARGUMENT)
    assert.equal((await unary('/tvix.store.v1.PathInfoService/Put', garbage)).code, status.INVALID_ARGUMENT)
    assert.equal((await unary('/tvix.store.v1.PathInfoService/CalculateNAR', garbage)).code, status.INVALID_ARGUMENT)
    assert.equal((await unary('/tvix.store.v1.PathInfoService/CalculateNAR', Buffer.alloc(0))).code, status.INVALID_ARGUMENT)
  })

  test('a wire-type mismatch (varint where bytes belong) is INVALID_ARGUMENT', async () => {
    assert.equal((await unary('/tvix.castore.v1.BlobService/Stat', Buffer.from([0x08, 0x01]))).code, status.INVALID_ARGUMENT)
  })

  test('an oversized message is RESOURCE_EXHAUSTED, and the daemon goes on serving', async () => {
    const big = Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x80, 0x03]), Buffer.alloc(6 << 20)])
    assert.equal((await clientStream('/tvix.castore.v1.BlobService/Put', [big])).code, status.RESOURCE_EXHAUSTED)
    // Still alive: an empty blob put works.
    assert.equal((await clientStream('/tvix.castore.v1.BlobService/Put', [])).code, status.OK)
  })

  test('an unknown method is UNIMPLEMENTED', async () => {
    assert.equal((await unary('/tvix.castore.v1.BlobService/Frobnicate', Buffer.alloc(0))).code, status.UNIMPLEMENTED)
  })

  test('failed calls are logged one line each; NOT_FOUND answers are not', async () => {
    const before = logs.length
    await unary('/tvix.castore.v1.BlobService/Stat', Buffer.concat([Buffer.from([0x0a, 0x20]), Buffer.alloc(32)]))
    assert.equal(logs.length, before)
    await unary('/tvix.castore.v1.BlobService/Stat', Buffer.from([0x0a, 0x01, 0x00]))
    assert.equal(logs.length, before + 1)
    assert.match(logs.at(-1)!, /^BlobService\/Stat failed: INVALID_ARGUMENT: digest has 1 bytes, want 32$/)
  })
})
