#!/usr/bin/env node
// CommonJS (bin/package.json): an ES module entry would cost every start-up the ESM loader.
'use strict'
const path = require('node:path')
const { compileFastPath, fastPathFiles } = require('./load-fast-path.cjs')

// Blob writes fsync in libuv's thread pool; the default of 4 threads starves it.
process.env.UV_THREADPOOL_SIZE ??= '16'

// ls, cat, narinfo, path-info, --version and the other hot commands each run from a bundle of their
// own without oclif's runtime (src/hot-commands.ts, built by npm run build); everything else is oclif's.
// oclif finds the package from its folder (not from here: bin/package.json has no name).
const argv = process.argv.slice(2)
const root = path.join(__dirname, '..')
const fast = mayRunFast(argv[0]) ? fastPathFiles(path.join(root, 'dist'), argv[0]) : undefined
;((fast ? compileFastPath(fast.bundle, fast.cache)?.exports : undefined) ?? { run: async () => false })
  .run(argv, root)
  .then(async (ran) => {
    if (ran) return
    const { main } = await import('../dist/cli/main.js')
    await main(argv, root)
  })

/** Whether the bundle may run this first word (dist/fast-path.json, written with it): others skip loading it. */
function mayRunFast(first) {
  try {
    return JSON.parse(require('node:fs').readFileSync(path.join(root, 'dist/fast-path.json'), 'utf8')).firstWords.includes(first)
  } catch {
    return false
  }
}
