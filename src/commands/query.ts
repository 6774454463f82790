import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { batchLines, writeAll } from '../cli/output.js'
import { StoreCommand } from '../cli/store-command.js'
import { UsageError } from '../errors.js'
import { type ListQuery, queryGraph, queryPaths, queryRoots, queryTree, type RootOfPath } from '../ops/query.js'

const QUERIES = ['references', 'referrers', 'requisites', 'referrers-closure', 'tree', 'graph', 'roots'] as const

export default class Query extends StoreCommand<typeof Query> {
  static override summary = 'Query the reference graph of store paths, as `nix-store --query` does.'
  static override description =
    'Exactly one query flag. Output is that of `nix-store -q`: paths one per line, each after the paths it refers to; ' +
    '--tree draws the references with Nix\'s tree characters; --graph prints Graphviz dot (`| dot -Tsvg`). ' +
    '--referrers, --referrers-closure and --roots use the store\'s referrers index, which a gRPC store does not offer.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> -R /nix/store/…-app',
    '<%= config.bin %> <%= command.id %> --referrers /nix/store/…-openssl',
    '<%= config.bin %> <%= command.id %> --graph /nix/store/…-app | dot -Tsvg > app.svg',
    '<%= config.bin %> <%= command.id %> --roots --json /nix/store/…-openssl',
  ]
  static override strict = false
  static override enableJsonFlag = true
  static override args = { path: Args.string({ ignoreStdin: true, description: 'store paths to query' }) }
  static override flags = {
    references: Flags.boolean({ summary: 'The paths the given paths refer to directly.' }),
    referrers: Flags.boolean({ summary: 'The paths that refer directly to the given paths.' }),
    requisites: Flags.boolean({ char: 'R', summary: 'The closure of the given paths: they and everything they refer to, directly or not.' }),
    'referrers-closure': Flags.boolean({ summary: 'The given paths and every path that refers to them, directly or not.' }),
    tree: Flags.boolean({ summary: 'The references as a tree; a path already shown is marked [...].' }),
    graph: Flags.boolean({ summary: 'The closure as a Graphviz dot graph.' }),
    roots: Flags.boolean({ summary: 'The GC roots that keep the given paths alive: ROOT -> STORE_PATH (local stores).' }),
  }

  async run(): Promise<string[] | RootOfPath[] | undefined> {
    const { argv } = await this.parse(Query)
    const paths = argv as string[]
    const chosen = QUERIES.filter((q) => this.flags[q])
    if (chosen.length !== 1) throw new UsageError(`give exactly one of ${QUERIES.map((q) => `--${q}`).join(', ')}${chosen.length > 1 ? ` (got ${chosen.map((q) => `--${q}`).join(' and ')})` : ''}`)
    if (paths.length === 0) throw new UsageError('give at least one store path')
    const query = chosen[0]!
    if (this.jsonEnabled() && (query === 'tree' || query === 'graph')) throw new UsageError(`--${query} has no JSON form; --requisites --json lists the same paths`)
    const lines = (it: AsyncIterable<string>) => writeAll(process.stdout, batchLines(map(it, (l) => Buffer.from(l))))
    if (query === 'tree') return void (await lines(queryTree(await this.store(), paths)))
    if (query === 'graph') return void (await lines(queryGraph(await this.store(), paths)))
    if (query === 'roots') {
      const roots = await queryRoots(await this.store(), paths, this.caller('query --roots'))
      if (!this.jsonEnabled()) await lines(iterate(roots.map((r) => `${r.link} -> ${r.path}`)))
      return roots
    }
    const found = await queryPaths(await this.store(), query as ListQuery, paths)
    if (!this.jsonEnabled()) await lines(iterate(found))
    return found
  }
}

async function* map<T, U>(it: AsyncIterable<T>, f: (t: T) => U): AsyncGenerator<U> {
  for await (const t of it) yield f(t)
}

async function* iterate<T>(items: T[]): AsyncGenerator<T> {
  yield* items
}
