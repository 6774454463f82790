import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { openLocalStore } from '../../src/backends/local/index.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { describeGarbageCollecting, describeGcRoots } from '../contracts/gc.js'

describeGarbageCollecting('memory', async () => openMemoryStore())

const localRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-gc-contract-local-'))
let stores = 0
describeGarbageCollecting('local', () => openLocalStore(path.join(localRoot, `store-${stores++}`)))
describeGcRoots('local', () => openLocalStore(path.join(localRoot, `store-${stores++}`)), async () => fs.rmSync(localRoot, { recursive: true, force: true }))
