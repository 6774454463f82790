// Builds dist/fast-path.<word>.cjs (npm run build): a hot command of src/hot-commands.ts and all it
// imports, in one CommonJS file (dist/fast-path.cjs: all of them), so that a cold `ls`/`cat` reads
// and compiles one file instead of resolving ~200 ES modules; then V8's code cache for it. Packages only other commands or backends
// use stay outside it. What a command does not run, it should not load: see the plugins below.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { createRequire, isBuiltin } from 'node:module'
import { pathToFileURL } from 'node:url'
import { build } from 'esbuild'
import { fastPathFiles } from '../bin/load-fast-path.cjs'

/**
 * oclif's modules require all their dependencies up front (the help renderer, the plugin loader,
 * ejs, minimatch…) though parsing a command's flags touches few of them. In the bundle each such
 * top-level require becomes a module proxy loaded on first use (oclif's code reaches them only as
 * `x_1.member`, as TypeScript compiles imports), so a fast command evaluates only what it runs.
 */
const lazyOclifRequires = {
  name: 'lazy-oclif-requires',
  setup(b) {
    b.onLoad({ filter: /[\\/]@oclif[\\/]core[\\/]lib[\\/].*\.js$/ }, async (args) => {
      const src = await fs.promises.readFile(args.path, 'utf8')
      const lazy = src.replace(
        /^(const|var) (\w+) = ((?:__importDefault|__importStar)\()?require\("([^"]+)"\)(\))?;$/gm,
        (_, kind, name, wrap = '', spec, close = '') => {
          const req = inBundle(args.path, spec) ? `require("${spec}")` : `__oclifRequire("${outside(args.path, spec)}")`
          return `${kind} ${name} = __lazyModule(() => ${wrap}${req}${close});`
        },
      )
      return { contents: lazy, loader: 'js' }
    })
  },
}
/**
 * What stays out of the bundle, loaded from node_modules if ever reached: oclif's packages (ejs,
 * wrap-ansi…), and the parts of oclif a command's run never reaches (Config.load and plugins, the
 * help renderer, performance marks, spinners; `Command.run`, `catch`, `log` call them, and our
 * commands are run through `_run` and override `catch` and `logJson`).
 */
const OCLIF_UNBUNDLED =
  /^(config\/(config|plugin|plugin-loader|ts-path|index)|help\/(index|command|formatter|root|docopts)|performance|module-loader|main|execute|index|ux\/(index|action\/.*|colorize-json)|util\/(find-root|read-pjson|read-tsconfig|cache-command|os|determine-priority)|errors\/handle)(\.js)?$/
const oclifLib = (file) => file.slice(file.lastIndexOf(`${path.sep}lib${path.sep}`) + 5)
function inBundle(importer, spec) {
  if (spec.startsWith('node:')) return true
  if (!spec.startsWith('.')) return false
  return !OCLIF_UNBUNDLED.test(path.posix.normalize(path.posix.join(path.dirname(oclifLib(importer)), spec)))
}
/** The specifier as @oclif/core's package.json would resolve it. */
function outside(importer, spec) {
  return spec.startsWith('.') ? './' + path.posix.join('lib', path.dirname(oclifLib(importer)), spec) : spec
}

// In the banner (not processed by esbuild): one module proxy helper, and oclif's require for its own packages.
const LAZY_HELPERS =
  'function __lazyModule(load) { let m; const get = () => (m ??= load()); return new Proxy({}, ' +
  '{ get: (_, k) => get()[k], has: (_, k) => k in get(), ownKeys: () => Reflect.ownKeys(get()), ' +
  'getOwnPropertyDescriptor: (_, k) => { const d = Reflect.getOwnPropertyDescriptor(get(), k); return d && { ...d, configurable: true } } }) }\n' +
  'function __lazyNamed(load, names) { let m; const get = () => (m ??= load()); const o = {}; ' +
  'for (const k of names) Object.defineProperty(o, k, { configurable: true, enumerable: true, get: () => get()[k] }); return o }\n' +
  "function __oclifRequire(id) { return require('node:module').createRequire(require.resolve('@oclif/core/package.json'))(id) }\n"

/**
 * Built-ins that a bare `node -e 0` has not loaded yet (crypto, zlib, child_process…) cost a few
 * milliseconds each, and the read path imports several it only needs on rare paths (zlib for
 * compressed chunks, child_process for sync); chalk, for error lines only, probes the terminal
 * (tty, os) as it loads. Each becomes a module that loads on its first member access; its export
 * names are known here, so esbuild's ESM interop can list them without loading it. It is a plain
 * object with a getter per name, not a Proxy: that interop copies every name once per importing
 * module, and through a Proxy's traps (each a search of the names) that cost milliseconds per start.
 * Built-ins Node loads at start-up anyway stay plain requires.
 */
const LAZY_PACKAGES = ['chalk', '@grpc/grpc-js']
const preloaded = new Set(
  JSON.parse(execFileSync(process.execPath, ['-p', 'JSON.stringify(process.moduleLoadList)'], { encoding: 'utf8' }))
    .filter((m) => m.startsWith('NativeModule '))
    .map((m) => m.slice('NativeModule '.length)),
)
const lazyModules = {
  name: 'lazy-modules',
  setup(b) {
    b.onResolve({ filter: /^(node:)?@?[a-z_/-]+$/ }, (args) => {
      if (args.namespace === 'lazy' || args.namespace === 'builtin') return undefined // the real module, from inside its stand-in
      const name = args.path.replace(/^node:/, '')
      if (isBuiltin(name) && preloaded.has(name)) return args.kind === 'import-statement' ? { path: name, namespace: 'builtin' } : undefined
      const lazy = isBuiltin(name) || LAZY_PACKAGES.includes(name)
      return lazy ? { path: name, namespace: 'lazy' } : undefined
    })
    // A loaded built-in imported by ES modules: as an ES module itself, so that esbuild binds the
    // names directly instead of copying the module's ~100 properties into a wrapper per import.
    b.onLoad({ filter: /.*/, namespace: 'builtin' }, (args) => {
      const m = createRequire(import.meta.url)(args.path)
      const names = Object.getOwnPropertyNames(m).filter((k) => /^[A-Za-z_$][\w$]*$/.test(k) && 'value' in Object.getOwnPropertyDescriptor(m, k))
      return { contents: `const m = require('node:${args.path}')\nexport default m\nexport const { ${names.join(', ')} } = m\n`, loader: 'js', resolveDir: process.cwd() }
    })
    b.onLoad({ filter: /.*/, namespace: 'lazy' }, async (args) => {
      const builtin = isBuiltin(args.path)
      const names = builtin ? Object.getOwnPropertyNames(createRequire(import.meta.url)(args.path)) : Object.keys(await import(args.path))
      const spec = builtin ? `node:${args.path}` : args.path
      return { contents: `module.exports = __lazyNamed(() => require('${spec}'), ${JSON.stringify(names)})`, loader: 'js', resolveDir: process.cwd() }
    })
  },
}

const CJS_WRAPPER = '(function (exports, require, module, __filename, __dirname) { '

/**
 * One hot command's bundle: src/hot-commands.ts with the other commands' lines taken out, so that
 * `cat` reads and compiles only what `cat` can reach (430 KiB instead of 650 KiB: ~4 % of its CPU
 * here). `only` undefined keeps them all; `null` keeps none (--version).
 */
const onlyCommand = (only) => ({
  name: 'only-command',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/]hot-commands\.ts$/ }, async (args) => {
      const src = await fs.promises.readFile(args.path, 'utf8')
      const line = /^ {2}'?([a-z-]+)'?: \(\) => load\(import\('\.\/commands\/[a-z-]+\.js'\)\),\n/gm
      const words = [...src.matchAll(line)].map((m) => m[1])
      // The lines must read as this expects, or a bundle would silently lack its command.
      if (words.length !== hotWords.length) throw new Error(`src/hot-commands.ts: ${words.length} command lines read, ${hotWords.length} commands exported`)
      return { contents: only === undefined ? src : src.replace(line, (l, word) => (word === only ? l : '')), loader: 'ts' }
    })
  },
})

async function bundle(outfile, only) {
  await build({
    entryPoints: ['src/hot-commands.ts'],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'warning',
    charset: 'ascii',
    // Smaller is faster to read and compile; names kept for the stack traces of errors not ours.
    minify: true,
    keepNames: true,
    // Native (blake-hash), or loaded only by other backends (gRPC, HTTP caches) and oclif's TypeScript support.
    external: ['@napi-rs/blake-hash', '@grpc/grpc-js', 'undici', 'typescript'],
    // digest.ts finds the native module from its own URL; in the bundle that is the bundle's.
    define: { 'import.meta.url': '__bundle_url' },
    // Wrapped here as Module.wrap would wrap it: bin/ compiles the file as it is, one string in V8's heap instead of two.
    banner: { js: `${CJS_WRAPPER}const __bundle_url = require('node:url').pathToFileURL(__filename).href;\n` + LAZY_HELPERS },
    footer: { js: '\n})' },
    plugins: [onlyCommand(only), lazyOclifRequires, lazyModules],
  })
  // bin/load-fast-path.cjs reads a bundle as latin1, the same string only while every byte is ASCII
  // (esbuild's default charset escapes the rest).
  if (fs.readFileSync(outfile).some((byte) => byte > 0x7f)) throw new Error(`${outfile} is not ASCII: bin/load-fast-path.cjs reads it as latin1`)
}

const { HOT_COMMANDS } = await import(pathToFileURL(path.resolve('dist/hot-commands.js')).href)
const hotWords = Object.keys(HOT_COMMANDS)
// All hot commands in one (the fast-path test's, for first words no bundle of its own takes), and one per first word, which bin/run.js loads.
await bundle('dist/fast-path.cjs')
for (const word of ['--version', ...hotWords]) await bundle(fastPathFiles('dist', word).bundle, word === '--version' ? null : word)

// The first words the bundle may run (dist/fast-path.json): bin/run.js reads these few bytes
// first, so `gc`, `import`, `--help`… go straight to oclif without loading the bundle to decline.
const firstWords = ['--version', ...hotWords]
fs.writeFileSync('dist/fast-path.json', JSON.stringify({ firstWords }) + '\n')

/**
 * V8's code cache for the bundle, which bin/run.js hands to V8 so that a start skips parsing it.
 * V8 caches only the functions compiled so far, so it is made after each hot command has run,
 * good and failing, on a small local store (made here by oclif's `import`) and on memory://: a
 * cold start then compiles nothing of the bundle that these runs reached. One cache per first
 * word's bundle (dist/fast-path.<word>.cache, what bin/run.js loads: V8 deserialises a cache
 * whole); none for the bundle of all, which only the fast-path test loads. A Node whose V8 differs
 * rejects a cache and compiles the bundle as before.
 */
const warmDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-store-warm-'))
try {
  const tree = path.join(warmDir, 'tree')
  fs.mkdirSync(path.join(tree, 'sub'), { recursive: true })
  fs.writeFileSync(path.join(tree, 'sub', 'a.txt'), 'warm\n')
  fs.symlinkSync('sub/a.txt', path.join(tree, 'link'))
  const store = path.join(warmDir, 'store')
  const p = execFileSync(process.execPath, ['bin/run.js', 'import', '--store', store, tree], { encoding: 'utf8' }).trim()
  const missing = '/nix/store/00000000000000000000000000000000-warm'
  const s = ['--store', store]
  const argvs = [
    ['--version'],
    ['ls', ...s, '-lR', p],
    ['ls', ...s, '--json', '-R', p],
    ['ls', ...s, `${p}/nope`],
    ['cat', ...s, `${p}/sub/a.txt`],
    ['cat', ...s, p],
    ['narinfo', ...s, p],
    ['narinfo', ...s, '--json', p],
    ['path-info', ...s, '-rsSh', p],
    ['path-info', ...s, '--json', '-r', p],
    ['path-info', ...s, '--json', missing],
    ['export-nar', ...s, p],
    ['import', ...s, '--json', path.join(tree, 'sub')],
    ['ls', ...s, '--frobnicate', p],
    ['ls', '--store', 'memory://', '-lR', missing],
    ['path-info', '--store', 'memory://', '--json', missing],
    ['verify', ...s],
    ['verify', ...s, '--json', p],
    ['query', ...s, '--requisites', p],
    ['query', ...s, '--json', '--referrers', p],
    ['copy', '--from', store, '--to', path.join(warmDir, 'copied'), p],
    ['copy', ...s, p],
    ['delete', ...s, missing],
    ['sign', ...s, p],
    // A daemon serves until stopped: its flags and store checks only, refused at the address.
    ['daemon', ...s, '--listen', 'not-an-address'],
    // Last: it empties the store the runs above read.
    ['gc', ...s, '--prune', '--grace', '0'],
  ]
  const warm = (runs, bundleFile, cacheFile) => `
const { compileFastPath } = require(${JSON.stringify(path.resolve('bin/load-fast-path.cjs'))})
const { script, exports: fast } = compileFastPath(${JSON.stringify(path.resolve(bundleFile))}, null)
;(async () => {
  for (const argv of ${JSON.stringify(runs)}) await fast.run(argv, ${JSON.stringify(path.resolve('.'))})
  require('node:fs').writeFileSync(${JSON.stringify(cacheFile)}, script.createCachedData())
  process.exitCode = 0
})()
`
  // gc's last, as in the list: its run empties the store the others' runs read.
  for (const word of [...firstWords.filter((w) => w !== 'gc'), 'gc']) {
    const { bundle, cache } = fastPathFiles('dist', word)
    execFileSync(process.execPath, ['-e', warm(argvs.filter((a) => a[0] === word), bundle, path.resolve(cache))], { stdio: 'ignore' })
  }
} finally {
  fs.rmSync(warmDir, { recursive: true, force: true })
}
