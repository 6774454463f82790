#!/usr/bin/env -S node --import tsx --no-warnings
// Runs the TypeScript sources directly (no build step), for development.
process.env.UV_THREADPOOL_SIZE ??= '16'

const { main } = await import('../src/cli/main.ts')
await main(process.argv.slice(2), import.meta.url, { development: true })
