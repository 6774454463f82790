import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Batcher } from '../../src/util/batcher.js'

describe('Batcher (group commit)', () => {
  test('concurrent adds share flushes; each waits for a flush that includes it', async () => {
    const flushes: number[][] = []
    const b = new Batcher<number>(async (items) => {
      await new Promise((r) => setTimeout(r, 5))
      flushes.push(items)
    })
    await Promise.all(Array.from({ length: 50 }, (_, i) => b.add(i)))
    assert.ok(flushes.length <= 3, `${flushes.length} flushes`)
    assert.deepEqual(flushes.flat().sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i))
  })

  test('a failed flush rejects exactly its own callers', async () => {
    let n = 0
    const b = new Batcher<number>(async () => {
      if (n++ === 0) throw new Error('disk on fire')
    })
    const first = b.add(1)
    await assert.rejects(first, /disk on fire/)
    await b.add(2)
  })
})
