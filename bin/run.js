#!/usr/bin/env node
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

// Blob writes fsync in libuv's thread pool; the default of 4 threads starves it.
process.env.UV_THREADPOOL_SIZE ??= '16'

// ls, cat, narinfo, path-info and --version run from one CommonJS bundle without oclif's
// runtime (src/hot-commands.ts, built by npm run build); everything else is oclif's.
const argv = process.argv.slice(2)
const fastPath = createRequire(import.meta.url)('../dist/fast-path.cjs')
if (!(await fastPath.run(argv, fileURLToPath(new URL('..', import.meta.url))))) {
  const { main } = await import('../dist/cli/main.js')
  await main(argv, import.meta.url)
}
