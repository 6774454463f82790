import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { runDag } from '../../src/util/dag.js'

/** A tick of the event loop: lets every other runnable node start, if the scheduler would let it. */
const tick = () => new Promise<void>((r) => setImmediate(r))

describe('runDag', () => {
  // A diamond and a tail: top -> left, right -> leaf; tail -> top.
  const graph: Record<string, string[]> = { tail: ['top'], top: ['left', 'right', 'top'], left: ['leaf'], right: ['leaf'], leaf: [] }

  test('runs each node once, after every node it depends on finished, at most `concurrency` at once', async () => {
    for (const limit of [1, 2, 8]) {
      const finished: string[] = []
      let running = 0
      let peak = 0
      await runDag(Object.keys(graph), (n) => graph[n]!, limit, async (n) => {
        for (const d of graph[n]!) if (d !== n) assert.ok(finished.includes(d), `${n} started before ${d} finished`)
        peak = Math.max(peak, ++running)
        await tick()
        await tick()
        running--
        finished.push(n)
      })
      assert.deepEqual([...finished].sort(), Object.keys(graph).sort())
      assert.ok(peak <= limit, `peak ${peak} over ${limit}`)
      // left and right are independent: with room for two they run together.
      if (limit >= 2) assert.equal(peak, 2)
    }
  })

  test('dependencies outside the nodes are taken as done', async () => {
    const ran: string[] = []
    await runDag(['top', 'left'], (n) => graph[n]!, 4, async (n) => void ran.push(n))
    assert.deepEqual(ran, ['left', 'top'])
  })

  test('after a failure no new work starts, and the failure is thrown', async () => {
    const ran: string[] = []
    const chain: Record<string, string[]> = { a: [], b: ['a'], c: ['b'], x: [] }
    await assert.rejects(
      runDag(Object.keys(chain), (n) => chain[n]!, 1, async (n) => {
        ran.push(n)
        if (n === 'a') throw new Error('a failed')
      }),
      /a failed/,
    )
    assert.deepEqual(ran, ['a'])
  })

  test('a cycle is refused before anything runs', async () => {
    const ran: string[] = []
    const cyclic: Record<string, string[]> = { a: ['b'], b: ['c'], c: ['a'] }
    await assert.rejects(runDag(Object.keys(cyclic), (n) => cyclic[n]!, 2, async (n) => void ran.push(n)), /cycle/)
    assert.deepEqual(ran, [])
  })

  test('a chain of 100,000 nodes: no recursion limit', async () => {
    const n = 100_000
    let next = 0
    await runDag(Array.from({ length: n }, (_, i) => i), (i) => (i > 0 ? [i - 1] : []), 4, async (i) => {
      assert.equal(i, next++)
    })
    assert.equal(next, n)
  })
})
