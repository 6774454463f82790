import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, test } from 'node:test'
import { openLocalStore } from '../../src/backends/local/index.js'
import { openStore } from '../../src/backends/open-store.js'
import { b3, b3Hasher, bytesEqual } from '../../src/castore/digest.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { rssKiB } from '../helpers/spawn.js'
import { randomBytes } from '../helpers/trees.js'

const READERS = 32
const RSS_LIMIT_MIB = 200

/**
 * 32 concurrent blob Reads of a 32 MiB packed blob through one daemon
 * (issue 14's reader figure, in one client process, which reads slower
 * than 32 would): every reader gets the true bytes, and the daemon's peak
 * RSS (VmHWM) stays under 200 MiB. A Read of a local store is served from
 * one reused read buffer per stream, each message written out before the
 * next is read.
 */
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-readers-rss-'))
let daemon: RunningDaemon | undefined
after(async () => {
  await daemon?.stop()
  fs.rmSync(root, { recursive: true, force: true })
})

test(`${READERS} concurrent Reads of a 32 MiB blob: true bytes, daemon peak RSS under ${RSS_LIMIT_MIB} MiB`, async (t) => {
  const storeDir = path.join(root, 'store')
  const data = randomBytes(32 << 20, 32)
  const local = await openLocalStore(storeDir)
  const { digest } = await local.blobs.put(data)
  await local.close()
  assert.ok(bytesEqual(digest, b3(data)))
  daemon = await startDaemon(storeDir, `unix:${path.join(root, 'd.sock')}`)
  const client = await openStore({ url: daemon.url })
  try {
    const sizes = await Promise.all(
      Array.from({ length: READERS }, async () => {
        const h = b3Hasher()
        let n = 0
        for await (const c of (await client.blobs.open(digest))!) {
          h.update(c)
          n += c.length
        }
        assert.ok(bytesEqual(h.digest(), digest), 'the bytes read are the blob')
        return n
      }),
    )
    assert.deepEqual(new Set(sizes), new Set([data.length]))
  } finally {
    await client.close()
  }
  const peak = rssKiB(daemon.proc.pid!, 'VmHWM')
  if (peak === undefined) return t.skip('no /proc/<pid>/status here: RSS not measured')
  t.diagnostic(`daemon peak RSS ${(peak / 1024).toFixed(1)} MiB`)
  assert.ok(peak / 1024 <= RSS_LIMIT_MIB, `daemon peak RSS ${(peak / 1024).toFixed(1)} MiB > ${RSS_LIMIT_MIB} MiB`)
})
