import { IntegrityError, UnsupportedError } from '../errors.js'
import * as nixbase32 from '../store/nixbase32.js'
import type { PathInfo } from '../store/path-info.js'
import { absolute, hashPart } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import { closureOf, referencesFirst } from './closure.js'
import type { Caller } from './require-capability.js'
import { getPathInfo } from './resolve.js'
import { rootKeeper } from './roots.js'

/**
 * `nix-store --query`, with Nix 2.8's output: the same paths, in the same
 * order, with the same tree characters and dot text. Nix orders paths by
 * their base name (hash part first) wherever it holds them in a set.
 */

export type ListQuery = 'references' | 'referrers' | 'requisites' | 'referrers-closure'

const baseName = (info: PathInfo) => Buffer.from(info.node.name).toString('utf8')
const hashOf = (info: PathInfo) => baseName(info).slice(0, 32)
const byBaseName = (a: PathInfo, b: PathInfo) => (baseName(a) < baseName(b) ? -1 : baseName(a) > baseName(b) ? 1 : 0)

/** The arguments' PathInfos, each checked valid ("path '…' is not valid" as Nix says), by hash part. */
async function argInfos(store: Store, args: string[]): Promise<Map<string, PathInfo>> {
  const out = new Map<string, PathInfo>()
  for (const a of args) {
    const { storePath, info } = await getPathInfo(store, a)
    out.set(hashPart(storePath), info)
  }
  return out
}

function referrersOf(store: Store): (info: PathInfo) => Promise<PathInfo[]> {
  const pathInfos = store.pathInfos
  if (!pathInfos.referrers) {
    throw new UnsupportedError(
      'referrers need the store\'s referrers index, which the tvix PathInfoService protocol does not offer: run the query where the store is (--store DIR on the daemon\'s machine)',
    )
  }
  return (info) => pathInfos.referrers!(storePathDigest(info))
}

const storePathDigest = (info: PathInfo) => nixbase32.decode(hashOf(info))

/** The referrers closure of `start` (the paths themselves included), as Nix's computeFSClosure(flip). */
async function referrersClosure(store: Store, start: Iterable<PathInfo>): Promise<Map<string, PathInfo>> {
  const referrers = referrersOf(store)
  const seen = new Map<string, PathInfo>()
  const stack = [...start]
  while (stack.length > 0) {
    const info = stack.pop()!
    if (seen.has(hashOf(info))) continue
    seen.set(hashOf(info), info)
    for (const r of await referrers(info)) if (!seen.has(hashOf(r))) stack.push(r)
  }
  return seen
}

/** The items in the order `nix-store -q` prints them: each after the paths it refers to (referencesFirst). */
function topoOrder(items: Map<string, PathInfo>): PathInfo[] {
  return referencesFirst([...items.values()].sort(byBaseName), hashOf, (i) => i.references.map((r) => nixbase32.encode(r)))
}

/** `--references`, `--referrers`, `--requisites`, `--referrers-closure`: absolute store paths in Nix's order. */
export async function queryPaths(store: Store, query: ListQuery, args: string[]): Promise<string[]> {
  const start = await argInfos(store, args)
  let items: Map<string, PathInfo>
  if (query === 'requisites') {
    items = await closureOf(store, [...start.values()].map((i) => `${store.storeDir}/${baseName(i)}`))
  } else if (query === 'referrers-closure') {
    items = await referrersClosure(store, start.values())
  } else if (query === 'referrers') {
    const referrers = referrersOf(store)
    items = new Map()
    for (const info of start.values()) for (const r of await referrers(info)) items.set(hashOf(r), r)
  } else {
    items = new Map()
    for (const info of start.values()) {
      for (const r of info.references) {
        const h = nixbase32.encode(r)
        if (items.has(h)) continue
        const ref = await store.pathInfos.get(r)
        if (!ref) throw new IntegrityError(`'${store.storeDir}/${baseName(info)}' refers to '${store.storeDir}/${h}-…', which is missing from the store`)
        items.set(h, ref)
      }
    }
  }
  return topoOrder(items).map((i) => `${store.storeDir}/${baseName(i)}`)
}

const TREE = { conn: '├───', line: '│   ', last: '└───', none: '    ' }

/**
 * `--tree`: each argument with its references below it, a path already
 * shown marked `[...]` instead of repeated (across arguments too). The
 * references of a path are listed dependencies first (topoOrder), which
 * flattens the tree as Nix does.
 */
export async function* queryTree(store: Store, args: string[]): AsyncGenerator<string> {
  const start = await argInfos(store, args)
  const closure = await closureOf(store, [...start.values()].map((i) => `${store.storeDir}/${baseName(i)}`))
  const done = new Set<string>()
  const line = (info: PathInfo, pad: string, repeat: boolean) => `${pad}${store.storeDir}/${baseName(info)}${repeat ? ' [...]' : ''}`
  for (const root of start.values()) {
    // Frames: what is still to print below a path, and the padding its lines continue with.
    const stack: Array<{ kids: PathInfo[]; i: number; tail: string }> = []
    const visit = (info: PathInfo, first: string, tail: string): string => {
      if (done.has(hashOf(info))) return line(info, first, true)
      done.add(hashOf(info))
      const refs = new Map(info.references.map((r) => [nixbase32.encode(r), closure.get(nixbase32.encode(r))!]))
      stack.push({ kids: topoOrder(refs), i: 0, tail })
      return line(info, first, false)
    }
    yield visit(root, '', '')
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!
      if (top.i >= top.kids.length) {
        stack.pop()
        continue
      }
      const last = ++top.i === top.kids.length
      yield visit(top.kids[top.i - 1]!, top.tail + (last ? TREE.last : TREE.conn), top.tail + (last ? TREE.none : TREE.line))
    }
  }
}

const COLOURS = ['black', 'red', 'green', 'blue', 'magenta', 'burlywood']

/**
 * `--graph`: the closure as Graphviz dot, text for text as Nix prints it.
 * Nix takes the smallest base name from a work set each time, so the
 * nodes come in that order; edge colours cycle through six in the order
 * the edges are printed.
 */
export async function* queryGraph(store: Store, args: string[]): AsyncGenerator<string> {
  const start = await argInfos(store, args)
  const closure = await closureOf(store, [...start.values()].map((i) => `${store.storeDir}/${baseName(i)}`))
  const q = (s: string) => `"${s}"`
  let edges = 0
  const work = new MinSet(start.keys())
  const done = new Set<string>()
  yield 'digraph G {'
  for (let h; (h = work.pop()) !== undefined; ) {
    if (done.has(h)) continue
    done.add(h)
    const info = closure.get(h)!
    const name = baseName(info)
    yield `${q(name)} [label = ${q(name.slice(33))}, shape = box, style = filled, fillcolor = "#ff0000"];`
    for (const r of info.references) {
      const rh = nixbase32.encode(r)
      if (rh === h) continue
      work.add(rh)
      yield `${q(baseName(closure.get(rh)!))} -> ${q(name)} [color = ${q(COLOURS[edges++ % COLOURS.length]!)}];`
    }
  }
  yield '}'
}

/** A set of hash parts that yields its smallest first (Nix's std::set begin()), as a binary heap; duplicates allowed. */
class MinSet {
  private readonly heap: string[] = []
  constructor(items: Iterable<string>) {
    for (const i of items) this.add(i)
  }

  add(x: string): void {
    const h = this.heap
    h.push(x)
    for (let i = h.length - 1; i > 0; ) {
      const p = (i - 1) >> 1
      if (h[p]! <= h[i]!) break
      ;[h[p], h[i]] = [h[i]!, h[p]!]
      i = p
    }
  }

  pop(): string | undefined {
    const h = this.heap
    if (h.length === 0) return undefined
    const top = h[0]
    const end = h.pop()!
    if (h.length > 0) {
      h[0] = end
      for (let i = 0; ; ) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && h[l]! < h[m]!) m = l
        if (r < h.length && h[r]! < h[m]!) m = r
        if (m === i) break
        ;[h[m], h[i]] = [h[i]!, h[m]!]
        i = m
      }
    }
    return top
  }
}

export interface RootOfPath {
  /** The root's file in the store (`<store>/roots/<name>`), as Nix prints a root's link. */
  link: string
  /** The store path it keeps alive. */
  path: string
}

/**
 * `--roots`: the GC roots that keep the arguments alive, i.e. whose path
 * is in the referrers closure of an argument. Ordered by that path, then
 * by root name.
 */
export async function queryRoots(store: Store, args: string[], caller: Caller = {}): Promise<RootOfPath[]> {
  const { roots } = rootKeeper(store, { what: 'query --roots', ...caller })
  const alive = await referrersClosure(store, (await argInfos(store, args)).values())
  const out: RootOfPath[] = []
  for (const r of await roots.list()) {
    if (!r.path || !alive.has(hashPart(r.path))) continue
    out.push({ link: roots.link(r.name), path: absolute(r.path, store.storeDir) })
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.link < b.link ? -1 : a.link > b.link ? 1 : 0))
}
