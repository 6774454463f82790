/**
 * The check thread: spans planned ahead come out in order, whichever
 * thread read and checked them, and give what the main thread alone gives:
 * the bytes of the file, the first chunk that does not match its digest,
 * the bytes there are of a short file, and a failed read raised on the
 * main thread. A lease released with spans still planned leaves nothing
 * behind for the next reader.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Lease, type SpanChunk, type SpanResult, SHARED_SPAN, checkAll, leaseCheckThread } from '../../src/castore/check-thread.js'
import { b3 } from '../../src/castore/digest.js'
import { randomBytes } from '../helpers/trees.js'

describe('check thread', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-check-thread-'))
  const file = path.join(dir, 'data')
  // Two spans' worth of chunks of uneven sizes, after 4 KiB no span covers.
  const data = randomBytes(4096 + 2 * SHARED_SPAN, 7)
  const sizes = [100_000, 16_384, 250_000, 70_001, 65_536, 300_000].map((n) => Math.round((n * SHARED_SPAN) / (1 << 20)))
  sizes.push(SHARED_SPAN - sizes.reduce((a, b) => a + b, 0))
  /** The chunks of the span at `start` (4096 or 4096 + SHARED_SPAN). */
  const chunksAt = (start: number): SpanChunk[] => {
    const list: SpanChunk[] = []
    for (let at = start, i = 0; i < sizes.length; at += sizes[i++]!) list.push({ size: sizes[i]!, digest: b3(data.subarray(at, at + sizes[i]!)) })
    return list
  }
  const spans = [4096, 4096 + SHARED_SPAN].map((pos) => ({ pos, chunks: chunksAt(pos) }))
  let fd: number
  let lease: Lease
  const readOwn = (into: Buffer, pos: number) => fs.readSync(fd, into, 0, into.length, pos)

  /** Plans the spans (each `times`, alternating, as many as fit at once), and hands each on: its result, its bytes copied. */
  function readAll(times: number, chunks = (k: number) => spans[k % 2]!.chunks, len = SHARED_SPAN, at = fd, own = readOwn): Array<SpanResult & { bytes: Buffer; k: number }> {
    const out: Array<SpanResult & { bytes: Buffer; k: number }> = []
    let planned = 0
    const order: number[] = []
    while (out.length < 2 * times) {
      while (planned < 2 * times && lease.plan(at, spans[planned % 2]!.pos, len, chunks(planned), own)) order.push(planned++)
      const r = lease.next()
      out.push({ ...r, bytes: Buffer.from(r.buf.subarray(0, r.got)), k: order.shift()! })
    }
    return out
  }

  before(async () => {
    fs.writeFileSync(file, data)
    fd = fs.openSync(file, 'r')
    const l = leaseCheckThread()
    assert.ok(l, 'a lease on a machine with more than one CPU')
    lease = l
    // The worker starts in the background: spans are read here alone until it is ready.
    for (let i = 0; i < 200 && !readAll(4).some((r) => r.byWorker); i++) await sleep(50)
    assert.ok(readAll(8).some((r) => r.byWorker), 'the worker took part')
  })
  after(() => {
    lease?.release()
    fs.closeSync(fd)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  test('spans planned ahead come out in order: the file, every chunk good', () => {
    const rs = readAll(8)
    for (const r of rs) {
      assert.deepEqual([r.got, r.bad], [SHARED_SPAN, -1])
      assert.ok(r.bytes.equals(data.subarray(spans[r.k % 2]!.pos, spans[r.k % 2]!.pos + SHARED_SPAN)), `span ${r.k}`)
    }
    assert.deepEqual(rs.map((r) => r.k), [...rs.keys()])
  })

  test('a bad chunk is found wherever it is, on either thread', () => {
    const found = new Set<boolean>()
    for (let i = 0; i < sizes.length; i++) {
      const wrong = (k: number) => spans[k % 2]!.chunks.map((c, j) => (j === i ? { ...c, digest: b3(Buffer.from(`not chunk ${j}`)) } : c))
      for (const r of readAll(4, wrong)) {
        assert.equal(r.bad, i, `chunk ${i} of span ${r.k}`)
        found.add(r.byWorker)
      }
      assert.equal(checkAll(data.subarray(4096, 4096 + SHARED_SPAN), wrong(0)), i, `chunk ${i}, main thread alone`)
    }
    assert.ok(found.has(true) && found.has(false), 'found by both threads')
  })

  test('a file that ends inside a span: the bytes there are, no chunk judged', () => {
    const short = path.join(dir, 'short')
    fs.writeFileSync(short, data.subarray(0, 4096 + SHARED_SPAN - 1000))
    const sfd = fs.openSync(short, 'r')
    try {
      const rs = readAll(4, undefined, SHARED_SPAN, sfd, (into, pos) => fs.readSync(sfd, into, 0, into.length, pos))
      for (const r of rs) assert.deepEqual([r.got, r.bad], r.k % 2 === 0 ? [SHARED_SPAN - 1000, -1] : [0, -1], `span ${r.k}`)
    } finally {
      fs.closeSync(sfd)
    }
  })

  test('a read the worker cannot do is done again on the main thread, whose error is raised', () => {
    // A folder opened for reading: both threads fail to read it; the main thread's read says why.
    const folder = fs.openSync(dir, 'r')
    try {
      for (let i = 0; i < 4; i++) {
        while (lease.plan(folder, 4096, SHARED_SPAN, spans[0]!.chunks, (into, pos) => fs.readSync(folder, into, 0, into.length, pos)));
        assert.throws(() => lease.next(), (e: NodeJS.ErrnoException) => e.code === 'EISDIR')
        // A failed read ends the reader's read: it releases its lease (readPackedBlob's finally).
        lease.release()
        lease = leaseCheckThread()!
      }
    } finally {
      fs.closeSync(folder)
    }
    // And the thread is still there for the next spans.
    assert.ok(readAll(4).every((r) => r.got === SHARED_SPAN && r.bad === -1))
  })

  test('released with spans planned: the next lease reads as if it were the first', () => {
    for (let k = 0; k < 4; k++) assert.equal(lease.plan(fd, spans[k % 2]!.pos, SHARED_SPAN, spans[k % 2]!.chunks, readOwn), true)
    assert.equal(lease.plan(fd, 4096, SHARED_SPAN, spans[0]!.chunks, readOwn), false, 'every slot planned')
    lease.next()
    lease.release()
    const l = leaseCheckThread()
    assert.ok(l)
    lease = l
    const rs = readAll(4)
    assert.deepEqual(rs.map((r) => r.k), [...rs.keys()])
    for (const r of rs) assert.ok(r.bytes.equals(data.subarray(spans[r.k % 2]!.pos, spans[r.k % 2]!.pos + SHARED_SPAN)), `span ${r.k}`)
  })
})
