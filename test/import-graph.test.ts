/**
 * The import graph of src/: no cycles, and dependencies point one way
 * (commands -> cli -> ops -> store -> castore; backends implement the
 * interfaces and are reached only through the registry). Type-only imports
 * count too: a cycle of types is still two layers that cannot be read, or
 * replaced, one without the other.
 *
 * TypeScript's own parser (a dev dependency already) finds the imports, so
 * comments, strings and multi-line import lists cannot fool it; parsing all
 * of src/ takes a few hundred milliseconds.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import ts from 'typescript'
import { REPO } from './helpers/cli.js'

const SRC = path.join(REPO, 'src')

/** Every .ts file under src/, relative to src/ ("castore/directory.ts"). */
function sourceFiles(): string[] {
  return (fs.readdirSync(SRC, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => f.split(path.sep).join('/'))
    .sort()
}

/** The module specifiers a file imports: static imports and re-exports, `import('…')` and `typeof import('…')`. */
function specifiers(file: string): string[] {
  const source = ts.createSourceFile(file, fs.readFileSync(path.join(SRC, file), 'utf8'), ts.ScriptTarget.Latest, false)
  const found: string[] = []
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text)
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0]
      if (arg && ts.isStringLiteralLike(arg)) found.push(arg.text)
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text)
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

/** file -> the files of src/ it imports (relative specifiers only; packages are not ours). */
function importGraph(): Map<string, string[]> {
  const files = new Set(sourceFiles())
  const graph = new Map<string, string[]>()
  for (const file of files) {
    const targets: string[] = []
    for (const spec of specifiers(file)) {
      if (!spec.startsWith('.')) continue
      const target = path.posix.join(path.posix.dirname(file), spec).replace(/\.js$/, '.ts')
      assert.ok(files.has(target), `${file} imports '${spec}', which is no file of src/`)
      targets.push(target)
    }
    graph.set(file, [...new Set(targets)].sort())
  }
  return graph
}

/** Every strongly connected component of more than one file (or a file importing itself), each as one cycle through it. */
function cycles(graph: Map<string, string[]>): string[][] {
  // Tarjan's algorithm, iterative so a deep graph cannot overflow the stack.
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const onStack = new Set<string>()
  const stack: string[] = []
  const found: string[][] = []
  let next = 0
  for (const start of graph.keys()) {
    if (index.has(start)) continue
    const work: Array<{ node: string; edge: number }> = [{ node: start, edge: 0 }]
    index.set(start, next)
    low.set(start, next++)
    stack.push(start)
    onStack.add(start)
    while (work.length > 0) {
      const frame = work[work.length - 1]!
      const edges = graph.get(frame.node) ?? []
      if (frame.edge < edges.length) {
        const to = edges[frame.edge++]!
        if (!index.has(to)) {
          index.set(to, next)
          low.set(to, next++)
          stack.push(to)
          onStack.add(to)
          work.push({ node: to, edge: 0 })
        } else if (onStack.has(to)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(to)!))
        }
        continue
      }
      work.pop()
      const parent = work[work.length - 1]
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!))
      if (low.get(frame.node) !== index.get(frame.node)) continue
      const component: string[] = []
      let member: string
      do {
        member = stack.pop()!
        onStack.delete(member)
        component.push(member)
      } while (member !== frame.node)
      if (component.length > 1 || (graph.get(frame.node) ?? []).includes(frame.node)) found.push(cycleThrough(graph, new Set(component)))
    }
  }
  return found
}

/** One concrete cycle inside a strongly connected component, shortest from its first file (breadth-first). */
function cycleThrough(graph: Map<string, string[]>, component: Set<string>): string[] {
  const start = [...component].sort()[0]!
  const cameFrom = new Map<string, string>()
  const queue = [start]
  while (queue.length > 0) {
    const node = queue.shift()!
    for (const to of graph.get(node) ?? []) {
      if (!component.has(to)) continue
      if (to === start) {
        const cycle = [node]
        while (cycle[0] !== start) cycle.unshift(cameFrom.get(cycle[0]!)!)
        return [...cycle, start]
      }
      if (!cameFrom.has(to)) {
        cameFrom.set(to, node)
        queue.push(to)
      }
    }
  }
  return [start, start]
}

/** The layer of a file: its top folder under src/ ("castore", "store", …), or the file itself at the top. */
function layer(file: string): string {
  return file.includes('/') ? file.slice(0, file.indexOf('/')) : file
}

/** Every import from a file of `from` into a file of `forbidden`, except the files `allowed`, as "a -> b" lines. */
function crossings(graph: Map<string, string[]>, from: string[], forbidden: string[], allowed: string[] = []): string[] {
  const bad: string[] = []
  for (const [file, targets] of graph) {
    if (!from.includes(layer(file))) continue
    for (const to of targets) if (forbidden.includes(layer(to)) && !allowed.includes(to)) bad.push(`src/${file} -> src/${to}`)
  }
  return bad
}

const graph = importGraph()

test('import graph: the walk sees the imports of src/', () => {
  // A parser that found nothing would pass every rule below.
  assert.ok(graph.size > 100, `only ${graph.size} files under src/`)
  assert.ok(graph.get('commands/ls.ts')?.length, 'commands/ls.ts imports nothing?')
  assert.ok(graph.get('castore/directory-service.ts')?.includes('castore/digest.ts'))
})

test('import graph: no cycles in src/', () => {
  const found = cycles(graph)
  assert.deepEqual(found.map((c) => c.map((f) => `src/${f}`).join(' -> ')), [], 'import cycles')
})

test('import graph: no cycles between the folders of src/', () => {
  // castore -> proto -> store -> castore was one before castore and store owned their protobuf encodings.
  const folders = new Map<string, string[]>()
  for (const [file, targets] of graph) {
    const from = layer(file)
    const into = new Set([...(folders.get(from) ?? []), ...targets.map(layer).filter((to) => to !== from)])
    folders.set(from, [...into].sort())
  }
  assert.deepEqual(cycles(folders).map((c) => c.map((f) => `src/${f}`).join(' -> ')), [], 'import cycles between folders')
})

test('import graph: src/proto (wire.ts and the generated code) is the leaf: it imports only src/errors.ts', () => {
  assert.deepEqual(crossings(graph, ['proto'], [...new Set([...graph.keys()].map(layer))].filter((l) => l !== 'proto' && l !== 'errors.ts')), [])
})

test('import graph: src/castore imports nothing of the layers above it', () => {
  assert.deepEqual(crossings(graph, ['castore'], ['store', 'ops', 'backends', 'daemon', 'http', 'cli', 'commands']), [])
})

test('import graph: src/store imports nothing of the layers above it', () => {
  assert.deepEqual(crossings(graph, ['store'], ['ops', 'backends', 'daemon', 'http', 'cli', 'commands']), [])
})

test('import graph: commands, cli and ops reach backends only through open-store.ts and registry.ts', () => {
  assert.deepEqual(crossings(graph, ['commands', 'cli', 'ops'], ['backends'], ['backends/open-store.ts', 'backends/registry.ts']), [])
})

test('import graph: the library entry (src/index.ts) loads nothing of the CLI', () => {
  // Everything index.ts reaches, transitively: oclif and process.stdout stay behind src/cli and src/commands.
  const reached = new Set<string>(['index.ts'])
  for (const file of reached) for (const to of graph.get(file) ?? []) reached.add(to)
  assert.deepEqual([...reached].filter((f) => ['cli', 'commands', 'daemon'].includes(layer(f))), [])
})
