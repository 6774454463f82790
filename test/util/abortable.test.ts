import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { setImmediate as nextTurn } from 'node:timers/promises'
import v8 from 'node:v8'
import vm from 'node:vm'
import { abortable } from '../../src/util/abortable.js'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

describe('abortable', () => {
  test('holds no chunk it passed on (streaming stays flat)', async () => {
    const refs: WeakRef<Buffer>[] = []
    async function* chunks() {
      for (let i = 0; i < 8; i++) {
        const b = Buffer.alloc(1 << 20, i)
        refs.push(new WeakRef(b))
        yield b
      }
    }
    let seen = 0
    for await (const c of abortable(chunks(), new AbortController().signal)) {
      seen += c.length
      if (refs.length === 6) {
        // WeakRefs hold their target until the current job ends.
        await nextTurn()
        gc()
        assert.deepEqual(refs.slice(0, 4).map((r) => r.deref() === undefined), [true, true, true, true], 'chunks already consumed were freed')
      }
    }
    assert.equal(seen, 8 << 20)
  })

  test('a read in flight fails with the reason at once, and the source is returned', async () => {
    let returned = false
    let release!: () => void
    async function* slow() {
      try {
        yield 1
        await new Promise<void>((r) => (release = r))
        yield 2
      } finally {
        returned = true
      }
    }
    const ac = new AbortController()
    const it = abortable(slow(), ac.signal)
    assert.deepEqual(await it.next(), { value: 1, done: false })
    const pending = it.next()
    await nextTurn()
    const reason = new Error('stop')
    ac.abort(reason)
    await assert.rejects(pending, (e) => e === reason)
    // The source's read was in flight: its return() runs once that read ends.
    release()
    await nextTurn()
    assert.equal(returned, true)
  })
})
