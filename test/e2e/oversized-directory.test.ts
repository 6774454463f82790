/**
 * A Directory over 4 MiB encoded cannot cross the wire as one gRPC
 * message (tvix and snix peers keep the 4 MiB limit), so no store accepts
 * one: import refuses the tree before committing anything, and a daemon
 * serving an older store that holds one answers with a reason and logs it
 * instead of failing the send silently.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { b3, toHex } from '../../src/castore/digest.js'
import type { Directory } from '../../src/castore/directory.js'
import { MAX_DIRECTORY_BYTES } from '../../src/castore/directory-service.js'
import { encodeDirectory } from '../../src/castore/proto.js'
import { field1, rawClient, watchDaemon } from '../helpers/attack.js'
import { runCli } from '../helpers/cli.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'

/** 15,000 entries with 250-byte names: about 4.3 MB encoded. */
const ENTRIES = 15_000
const longName = (i: number) => `${String(i).padStart(6, '0')}${'n'.repeat(244)}`

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
}

describe('Directories over 4 MiB', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bigdir-'))
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  test('import refuses the tree with one error line and leaves the store as it was', async () => {
    const tree = path.join(root, 'wide')
    fs.mkdirSync(tree)
    for (let i = 0; i < ENTRIES; i++) fs.writeFileSync(path.join(tree, longName(i)), '')
    const store = path.join(root, 'import-store')
    const r = await runCli(['import', '--store', store, tree])
    assert.notEqual(r.code, 0)
    const lines = r.stderr.trim().split('\n')
    assert.equal(lines.length, 1, r.stderr)
    assert.match(lines[0]!, /^error: .*15000 entries is \d+ bytes encoded, over the limit of 4194304 bytes/)
    assert.deepEqual(listFiles(store).filter((f) => !f.startsWith('tmp/') && !f.startsWith('locks/') && f !== 'tvix-store.json'), [])
    assert.deepEqual(listFiles(path.join(store, 'tmp')), [])
  })

  describe('a daemon serving a store that holds one', () => {
    const store = path.join(root, 'old-store')
    const big: Directory = {
      directories: [],
      files: Array.from({ length: ENTRIES }, (_, i) => ({ kind: 'file' as const, name: Buffer.from(longName(i)), digest: Buffer.alloc(32, 1), size: 0, executable: false })),
      symlinks: [],
    }
    const bytes = encodeDirectory(big)
    const digest = b3(bytes)
    let daemon: RunningDaemon

    before(async () => {
      assert.ok(bytes.length > MAX_DIRECTORY_BYTES)
      // Set up the store, then place the Directory as an older version could have stored it.
      const seed = path.join(root, 'seed')
      fs.writeFileSync(seed, 'seed\n')
      const init = await runCli(['import', '--store', store, seed])
      assert.equal(init.code, 0, init.stderr)
      const file = path.join(store, 'dirs/b3', toHex(digest).slice(0, 2), toHex(digest))
      fs.mkdirSync(path.dirname(file), { recursive: true })
      fs.writeFileSync(file, bytes)
      daemon = await startDaemon(store, `127.0.0.1:${await freePort()}`)
    })
    after(async () => {
      await daemon?.stop()
    })

    test('Directory Get fails with the reason, and the daemon logs it', async (t) => {
      const client = rawClient(daemon.url)
      const watch = watchDaemon(daemon.proc.pid!, daemon.url)
      try {
        for (const recursive of [false, true]) {
          const body = Buffer.concat([field1(digest), recursive ? Buffer.from([0x10, 0x01]) : Buffer.alloc(0)])
          const err = await new Promise<{ code: number; details: string }>((resolve) => {
            const call = client.makeServerStreamRequest('/tvix.castore.v1.DirectoryService/Get', (b: Buffer) => b, (b: Buffer) => b, body)
            call.on('data', () => {})
            call.on('error', (e: { code: number; details: string }) => resolve(e))
            call.on('end', () => resolve({ code: 0, details: '' }))
          })
          assert.equal(err.code, 9, err.details) // FAILED_PRECONDITION
          assert.match(err.details, /^cannot send a directory with 15000 entries is \d+ bytes encoded, over the limit/)
        }
        assert.match(daemon.log(), /DirectoryService\/Get failed: FAILED_PRECONDITION: cannot send a directory with 15000 entries/)
      } finally {
        const w = await watch.stop()
        t.diagnostic(`Get of a ${bytes.length}-byte Directory: daemon peak RSS ${w.peakRssMiB} MiB; Stat latency median ${w.medianMs} ms, max ${w.maxMs} ms (${w.probes} probes)`)
        client.close()
      }
    })
  })
})
