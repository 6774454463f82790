/**
 * Importing one large file through the CLI: the store path Nix gives it,
 * with the process's peak RSS flat (issue 14: at most 200 MiB), which it
 * cannot be if any part of the file is held beyond a few read and write
 * buffers. 256 MiB of incompressible bytes: no compression or dedup makes
 * it lighter.
 */
import assert from 'node:assert/strict'
import { createCipheriv } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { REPO, BIN, cliEnv } from '../helpers/cli.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { runProcess } from '../helpers/spawn.js'

const MiB = 1 << 20
const SIZE = 256 * MiB
const RSS_LIMIT_MIB = 200
const SKIP = nixMissing()
if (SKIP) console.log(SKIP)

/** An AES-CTR keystream: fast to make, incompressible, no two chunks alike. */
function writeKeystream(file: string, bytes: number): void {
  const cipher = createCipheriv('aes-256-ctr', Buffer.alloc(32, 7), Buffer.alloc(16))
  const zeros = Buffer.alloc(MiB)
  const fd = fs.openSync(file, 'w')
  try {
    for (let done = 0; done < bytes; done += MiB) fs.writeSync(fd, cipher.update(zeros))
  } finally {
    fs.closeSync(fd)
  }
}

test(`import of a ${SIZE / MiB} MiB file: the store path Nix gives it, peak RSS at most ${RSS_LIMIT_MIB} MiB`, { skip: SKIP }, async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'large-import-'))
  const file = path.join(tmp, 'large.bin')
  writeKeystream(file, SIZE)
  const usage = path.join(tmp, 'usage')
  // bench/rss-preload.mjs records the process's CPU and peak RSS (KiB) as it exits.
  const r = await runProcess(process.execPath, ['--import', path.join(REPO, 'bench/rss-preload.mjs'), BIN, 'import', '--store', path.join(tmp, 'ours'), file], {
    env: cliEnv({ BENCH_RSS_FILE: usage }),
  })
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.toString().trim(), new NixStore(path.join(tmp, 'nix')).add(file))
  const peakMiB = Number(fs.readFileSync(usage, 'utf8').split(' ')[2]) / 1024
  t.diagnostic(`peak RSS ${peakMiB.toFixed(1)} MiB`)
  assert.ok(peakMiB > 0 && peakMiB <= RSS_LIMIT_MIB, `peak RSS ${peakMiB.toFixed(1)} MiB > ${RSS_LIMIT_MIB} MiB`)
})
