/**
 * export-nar through a daemon that sends a wrong blob (bit rot behind a
 * daemon that does not check, or a lying peer): the client checks every
 * blob before its bytes go out, also those it fetched ahead, so the
 * export fails with one error line and writes no byte of the bad file.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import type { BlobService } from '../../src/castore/blob-service.js'
import { type B3Digest, b3, b3Display, bytesEqual } from '../../src/castore/digest.js'
import { parseListen } from '../../src/daemon/listen.js'
import { type Daemon, startDaemon } from '../../src/daemon/server.js'
import { importPath } from '../../src/ops/import-paths.js'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { randomBytes } from '../helpers/trees.js'

/** `blobs`, except that the blob `victim` is served with one byte changed, or said to be absent while `hidden`. */
function lyingAbout(blobs: BlobService, victim: () => B3Digest | undefined): BlobService {
  return new Proxy(blobs, {
    get(target, prop) {
      if (prop !== 'open') return Reflect.get(target, prop, target)
      return async (d: B3Digest, o: never) => {
        const v = victim()
        if (hidden && v && bytesEqual(d, v)) return undefined
        const src = await target.open(d, o)
        if (!src || !v || !bytesEqual(d, v)) return src
        return (async function* () {
          for await (const c of src) {
            const bad = Buffer.from(c)
            bad[bad.length >> 1]! ^= 0x01
            yield bad
          }
        })()
      }
    },
  })
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'wrong-blob-'))
let daemon: Daemon
let victim: B3Digest | undefined
let hidden = false
/** 300 small files (most fetched ahead while earlier ones are written), the 200th sent wrong. */
const dir = path.join(root, 'tree')
let storePath = ''

before(async () => {
  fs.mkdirSync(dir)
  for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(dir, `f${String(i).padStart(3, '0')}`), randomBytes(100 + i * 7, 3000 + i))
  const store = openMemoryStore()
  storePath = (await importPath(store, dir)).storePath
  daemon = await startDaemon({ ...store, blobs: lyingAbout(store.blobs, () => victim) }, parseListen('127.0.0.1:0'), () => {})
})
after(async () => {
  await daemon.shutdown()
  fs.rmSync(root, { recursive: true, force: true })
})

test('export-nar through the daemon: the NAR as nix-store --dump writes it, or, with one blob sent wrong, the NAR before that file, then one error line', { skip: nixMissing() }, async () => {
  const want = NixStore.dump(dir)
  victim = undefined
  const good = await runCli(['export-nar', '--store', daemon.url, storePath])
  assert.equal(good.code, 0, good.stderr)
  assert.ok(good.stdout.equals(want), 'NAR bytes differ from nix-store --dump')

  const bad = fs.readFileSync(path.join(dir, 'f200'))
  victim = b3(bad)
  const r = await runCli(['export-nar', '--store', daemon.url, storePath])
  assert.equal(r.code, 1)
  assertOneErrorLine(r.stderr, /corrupt|does not match/)
  const contentsAt = want.indexOf(bad)
  assert.ok(contentsAt > 0)
  assert.ok(r.stdout.length <= contentsAt, `${r.stdout.length} bytes out; the bad file's contents start at ${contentsAt}`)
  assert.ok(want.subarray(0, r.stdout.length).equals(r.stdout), 'what was written is not the NAR prefix')
})

test('export-nar through the daemon with one blob of the tree absent there: the NAR before that file, then one error line naming the blob', { skip: nixMissing() }, async () => {
  const want = NixStore.dump(dir)
  const gone = fs.readFileSync(path.join(dir, 'f150'))
  victim = b3(gone)
  hidden = true
  try {
    const r = await runCli(['export-nar', '--store', daemon.url, storePath])
    assert.equal(r.code, 1)
    assertOneErrorLine(r.stderr, new RegExp(`blob ${b3Display(victim).replace(/[+/]/g, '\\$&')} is missing`))
    const contentsAt = want.indexOf(gone)
    assert.ok(contentsAt > 0)
    assert.ok(r.stdout.length <= contentsAt, `${r.stdout.length} bytes out; the absent file's contents start at ${contentsAt}`)
    assert.ok(want.subarray(0, r.stdout.length).equals(r.stdout), 'what was written is not the NAR prefix')
  } finally {
    hidden = false
    victim = undefined
  }
})
