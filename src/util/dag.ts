import { InvalidInputError } from '../errors.js'
import { limiter } from './pool.js'

/**
 * Runs `work` once per node, each after the work of every node it depends
 * on has finished, with at most `concurrency` running at once: the
 * "references first" schedule of copy and import-closure. Dependencies
 * outside `nodes` are taken as done (the caller found them stored). After
 * the first failure no new work starts; it is thrown once the running work
 * settles. A cycle is refused before anything runs.
 */
export async function runDag<K>(nodes: Iterable<K>, deps: (node: K) => Iterable<K>, concurrency: number, work: (node: K) => Promise<void>): Promise<void> {
  const all = new Set(nodes)
  const gate = limiter(concurrency)
  const done = new Map<K, Promise<void>>()
  let failure: { e: unknown } | undefined
  const start = (node: K, after: Promise<void>[]) =>
    Promise.all(after).then(() =>
      gate(async () => {
        if (failure) return
        try {
          await work(node)
        } catch (e) {
          failure ??= { e }
          throw e
        }
      }),
    )
  // One promise per node, made in dependency order: each is made after those of its dependencies exist.
  for (const node of dependenciesFirst(all, deps)) {
    const p = start(node, [...deps(node)].filter((d) => d !== node && all.has(d)).map((d) => done.get(d)!))
    p.catch(() => {})
    done.set(node, p)
  }
  await Promise.allSettled(done.values())
  if (failure) throw failure.e
}

/** Post-order over the dependency graph with an explicit stack (any depth); a self-dependency is ignored, a cycle refused. */
function dependenciesFirst<K>(all: Set<K>, deps: (node: K) => Iterable<K>): K[] {
  const out: K[] = []
  const state = new Map<K, 'open' | 'done'>()
  for (const root of all) {
    if (state.has(root)) continue
    state.set(root, 'open')
    const stack = [{ node: root, next: [...deps(root)][Symbol.iterator]() }]
    while (stack.length > 0) {
      const top = stack.at(-1)!
      const r = top.next.next()
      if (r.done) {
        state.set(top.node, 'done')
        out.push(top.node)
        stack.pop()
        continue
      }
      const d = r.value
      if (d === top.node || !all.has(d) || state.get(d) === 'done') continue
      if (state.get(d) === 'open') throw new InvalidInputError('the references form a cycle')
      state.set(d, 'open')
      stack.push({ node: d, next: [...deps(d)][Symbol.iterator]() })
    }
  }
  return out
}
