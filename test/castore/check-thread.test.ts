/**
 * The check thread: a span read and checked half here, half on the worker,
 * gives what the main thread alone gives: the bytes of the file, the first
 * chunk that does not match its digest wherever it lies, the bytes there
 * are of a short file, and a failed read raised on the main thread.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Lease, type SpanChunk, type SpanResult, SHARED_SPAN, checkAll, leaseCheckBuffer } from '../../src/castore/check-thread.js'
import { b3 } from '../../src/castore/digest.js'
import { randomBytes } from '../helpers/trees.js'

describe('check thread', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-check-thread-'))
  const file = path.join(dir, 'data')
  // A span's worth of chunks of uneven sizes, after 4 KiB the span does not cover.
  const data = randomBytes(4096 + SHARED_SPAN, 7)
  // Sizes for a 1 MiB span, scaled to the span: the worker's half starts inside the sixth.
  const sizes = [100_000, 16_384, 250_000, 70_001, 65_536, 300_000].map((n) => Math.round((n * SHARED_SPAN) / (1 << 20)))
  sizes.push(SHARED_SPAN - sizes.reduce((a, b) => a + b, 0))
  const chunks: SpanChunk[] = []
  for (let at = 4096, i = 0; i < sizes.length; at += sizes[i++]!) chunks.push({ size: sizes[i]!, digest: b3(data.subarray(at, at + sizes[i]!)) })
  let fd: number
  let lease: Lease

  before(async () => {
    fs.writeFileSync(file, data)
    fd = fs.openSync(file, 'r')
    const l = leaseCheckBuffer()
    assert.ok(l, 'a lease on a machine with more than one CPU')
    lease = l
    // The worker starts in the background: spans are checked here alone until it is ready.
    for (let i = 0; i < 200 && !readSpan().shared; i++) await sleep(50)
    assert.ok(readSpan().shared, 'the worker took part')
  })
  after(() => {
    lease?.release()
    fs.closeSync(fd)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  function readSpan(list: SpanChunk[] = chunks, len = SHARED_SPAN, readOwn = (into: Buffer, pos: number) => fs.readSync(fd, into, 0, into.length, pos)): SpanResult {
    return lease.readChecked(fd, 4096, len, list, readOwn)
  }

  test('the span read in two halves is the file, every chunk good', () => {
    lease.buf.fill(0)
    assert.deepEqual(readSpan(), { got: SHARED_SPAN, bad: -1, shared: true })
    assert.ok(lease.buf.subarray(0, SHARED_SPAN).equals(data.subarray(4096)))
  })

  test('a bad chunk is found wherever it is, on either thread', () => {
    for (const i of chunks.keys()) {
      const wrong = chunks.map((c, k) => (k === i ? { ...c, digest: b3(Buffer.from(`not chunk ${k}`)) } : c))
      assert.deepEqual(readSpan(wrong), { got: SHARED_SPAN, bad: i, shared: true }, `chunk ${i}`)
      assert.equal(checkAll(lease.buf.subarray(0, SHARED_SPAN), wrong), i, `chunk ${i}, main thread alone`)
    }
  })

  test('a file that ends inside the span: the bytes there are, no chunk judged', () => {
    const short = path.join(dir, 'short')
    fs.writeFileSync(short, data.subarray(0, 4096 + SHARED_SPAN - 1000))
    const sfd = fs.openSync(short, 'r')
    try {
      const r = lease.readChecked(sfd, 4096, SHARED_SPAN, chunks, (into, pos) => fs.readSync(sfd, into, 0, into.length, pos))
      assert.deepEqual(r, { got: SHARED_SPAN - 1000, bad: -1, shared: true })
    } finally {
      fs.closeSync(sfd)
    }
  })

  test("a read the worker cannot do is done again on the main thread, whose error is raised", () => {
    // A folder opened for reading: both threads fail to read it; the main thread's read says why.
    const folder = fs.openSync(dir, 'r')
    try {
      assert.throws(
        () => lease.readChecked(folder, 4096, SHARED_SPAN, chunks, (into, pos) => fs.readSync(folder, into, 0, into.length, pos)),
        (e: NodeJS.ErrnoException) => e.code === 'EISDIR',
      )
    } finally {
      fs.closeSync(folder)
    }
    // And the thread is still there for the next span.
    assert.deepEqual(readSpan(), { got: SHARED_SPAN, bad: -1, shared: true })
  })
})
