import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { AVG_CHUNK, MAX_CHUNK, MIN_CHUNK, chunkStream, cutPoint } from '../../src/castore/chunker.js'
import { randomBytes } from '../helpers/trees.js'

async function chunksOf(data: Buffer, readSize: number): Promise<Buffer[]> {
  async function* src() {
    for (let i = 0; i < data.length; i += readSize) yield data.subarray(i, i + readSize)
  }
  const out: Buffer[] = []
  for await (const c of chunkStream(src())) out.push(Buffer.from(c))
  return out
}

describe('content-defined chunker', () => {
  const data = randomBytes(16 << 20, 42)

  test('chunks concatenate to the input, sizes within bounds, average near the target', async () => {
    const chunks = await chunksOf(data, 1 << 20)
    assert.deepEqual(Buffer.concat(chunks), data)
    for (const c of chunks.slice(0, -1)) assert.ok(c.length >= MIN_CHUNK && c.length <= MAX_CHUNK, `${c.length}`)
    const avg = data.length / chunks.length
    assert.ok(avg > AVG_CHUNK * 0.6 && avg < AVG_CHUNK * 1.6, `average ${avg}`)
  })

  test('boundaries do not depend on how the input was read', async () => {
    const a = (await chunksOf(data, 1 << 20)).map((c) => c.length)
    for (const size of [1000, 12345, 300_000, 16 << 20]) {
      const b = await chunksOf(data, size)
      assert.deepEqual(b.map((c) => c.length), a, `read size ${size}`)
      assert.deepEqual(Buffer.concat(b), data)
    }
  })

  test('an edit in the middle changes only the chunks around it', async () => {
    const edited = Buffer.from(data)
    edited.write('a small edit', 8 << 20)
    const inserted = Buffer.concat([data.subarray(0, 5 << 20), Buffer.from('inserted bytes'), data.subarray(5 << 20)])
    const key = (cs: Buffer[]) => new Set(cs.map((c) => c.toString('base64')))
    const before = key(await chunksOf(data, 1 << 20))
    for (const changed of [edited, inserted]) {
      const after = await chunksOf(changed, 1 << 20)
      const fresh = after.filter((c) => !before.has(c.toString('base64')))
      assert.ok(fresh.length <= 3, `${fresh.length} new chunks of ${after.length}`)
    }
  })

  test('a source may reuse its buffer once the next input is asked for, a chunk is valid until the next is', async () => {
    const expected = await chunksOf(data, 1 << 20)
    for (const size of [1000, 12345, 300_000, 1 << 20]) {
      // One buffer for every input, scribbled over before it is refilled: a view kept past its turn reads garbage.
      const reused = Buffer.allocUnsafe(size)
      async function* src() {
        for (let i = 0; i < data.length; i += size) {
          const n = data.copy(reused, 0, i, i + size)
          yield reused.subarray(0, n)
          reused.fill(0xa5)
        }
      }
      const got: Buffer[] = []
      // A chunk's memory may be reused once the next is asked for: each is copied as it comes.
      for await (const c of chunkStream(src())) got.push(Buffer.from(c))
      assert.deepEqual(got.map((c) => c.length), expected.map((c) => c.length), `read size ${size}`)
      assert.ok(Buffer.concat(got).equals(data), `read size ${size}: bytes differ`)
    }
  })

  test('the stream cuts where cutPoint, the definition of a boundary in JS, cuts', async () => {
    const text = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `line ${i % 977} of some text\n`).join(''))
    // Zeros never satisfy the mask: every chunk is cut at MAX_CHUNK.
    for (const [what, input] of [['random', data], ['zeros', Buffer.alloc((3 << 20) + 5)], ['text', text]] as const) {
      const expected: number[] = []
      for (let off = 0; off < input.length; off += expected.at(-1)!) expected.push(cutPoint(input, off, input.length))
      for (const size of [4096, 1 << 20, 5 << 20]) {
        assert.deepEqual((await chunksOf(input, size)).map((c) => c.length), expected, `${what}, read size ${size}`)
      }
    }
  })

  test('streams chunked at the same time, and one after another, do not share memory', async () => {
    const other = randomBytes(6 << 20, 43)
    const [a, b] = [await chunksOf(data, 1 << 20), await chunksOf(other, 1 << 20)]
    const src = (d: Buffer) => (async function* () { for (let i = 0; i < d.length; i += 1 << 20) yield d.subarray(i, i + (1 << 20)) })()
    const [ia, ib] = [chunkStream(src(data)), chunkStream(src(other))]
    const [ga, gb]: Buffer[][] = [[], []]
    for (let done = 0; done < 2; ) {
      done = 0
      for (const [it, got] of [[ia, ga], [ib, gb]] as const) {
        const r = await it.next()
        if (r.done) done++
        else got.push(Buffer.from(r.value))
      }
    }
    assert.ok(Buffer.concat(ga).equals(data) && Buffer.concat(gb).equals(other))
    assert.deepEqual([ga.length, gb.length], [a.length, b.length])
  })

  test('small inputs are one chunk', async () => {
    assert.equal((await chunksOf(data.subarray(0, MIN_CHUNK - 1), 100)).length, 1)
    assert.equal((await chunksOf(Buffer.alloc(0), 100)).length, 0)
  })
})
