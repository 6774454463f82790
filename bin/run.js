#!/usr/bin/env node
// Blob writes fsync in libuv's thread pool; the default of 4 threads starves it.
process.env.UV_THREADPOOL_SIZE ??= '16'

const { execute } = await import('@oclif/core/execute')
await execute({ dir: import.meta.url })
