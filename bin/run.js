#!/usr/bin/env node
// Blob writes fsync in libuv's thread pool; the default of 4 threads starves it.
process.env.UV_THREADPOOL_SIZE ??= '16'

const { main } = await import('../dist/cli/main.js')
await main(process.argv.slice(2), import.meta.url)
