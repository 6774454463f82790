#!/usr/bin/env -S node --import tsx --no-warnings
// Runs the TypeScript sources directly (no build step), for development; always through oclif.
'use strict'
const path = require('node:path')

process.env.UV_THREADPOOL_SIZE ??= '16'

import('../src/cli/main.ts').then(({ main }) => main(process.argv.slice(2), path.join(__dirname, '..'), { development: true }))
