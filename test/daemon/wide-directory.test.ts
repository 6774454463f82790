/**
 * Issue 16's widest Directory, through a daemon process: 4 MiB (one gRPC
 * message) of 3-byte names holds 100,000 entries, and each decoded entry
 * costs the daemon a few hundred bytes as it is checked, stored, read back
 * and rendered (one of 100,000 took it from 85 to 283 MiB). So a Put over
 * --max-directory-entries is refused before it is decoded, and one at the
 * default cap is put, read back and rendered within the memory bound
 * (rssBounded, which also probes the daemon with a Stat meanwhile). The
 * expected NAR is built token by token (test/helpers/nar.ts), independent
 * of the encoder under test. The 10,000-deep chain through a daemon (its
 * gRPC and HTTP reads, gc while served, RSS): test/e2e/deep-trees.test.ts.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test, type TestContext } from 'node:test'
import { b3, toHex } from '../../src/castore/digest.js'
import { type Directory, directorySize } from '../../src/castore/directory.js'
import { encodeDirectory, encodeNode } from '../../src/castore/proto.js'
import { calculateNarResponse, getDirectoryRequest } from '../../src/grpc/messages.js'
import { rssBounded } from '../helpers/attack.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { entry, nar, regular, toks } from '../helpers/nar.js'
import { RawGrpc } from '../helpers/raw-grpc.js'
import { openStore } from '../../src/backends/open-store.js'

const ENTRIES = 100_000
const EMPTY = new Uint8Array(0)
const CALC = '/tvix.store.v1.PathInfoService/CalculateNAR'
const GET = '/tvix.castore.v1.DirectoryService/Get'
/** The daemon's default --max-directory-entries. */
const MAX_ENTRIES = 32_768
/** A Directory as wide as fits in one message with 4-letter names (~3.9 MB), and Gets of it at once. */
const STORED_ENTRIES = 90_000
const GETS = 8

describe('a daemon and the widest Directories', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-wide-dir-'))
  const store = path.join(root, 'store')
  let daemon: RunningDaemon
  let grpc: RawGrpc

  const attack = (t: TestContext, what: string, run: () => Promise<void>) => rssBounded(t, { pid: daemon.proc.pid!, url: daemon.url }, what, run)

  before(async () => {
    daemon = await startDaemon(store, '127.0.0.1:0')
    grpc = new RawGrpc(daemon.url)
  })
  after(async () => {
    grpc?.close()
    await daemon?.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test(`a Directory of ${ENTRIES} entries (4 MiB of short names hold that many) is refused; one of ${MAX_ENTRIES}, the default cap, is put, read back and rendered`, async (t) => {
    await attack(t, `Directories of ${ENTRIES} and ${MAX_ENTRIES} entries`, async () => {
      const put = await grpc.clientStream('/tvix.castore.v1.BlobService/Put', [])
      assert.equal(put.code, 0, put.details)
      // Within one message, over the entry cap: refused before it is decoded.
      const tooMany = encodeDirectory(wide(ENTRIES, 3))
      assert.ok(tooMany.length <= 4 << 20, `${tooMany.length} bytes`)
      const refused = await grpc.clientStream('/tvix.castore.v1.DirectoryService/Put', [tooMany])
      assert.equal(refused.code, 8, refused.details) // RESOURCE_EXHAUSTED
      assert.match(refused.details!, new RegExp(`a directory with ${ENTRIES} entries is over --max-directory-entries \\(${MAX_ENTRIES}\\)`))
      // One byte more per name and it is over the message size.
      const tooLarge = await grpc.clientStream('/tvix.castore.v1.DirectoryService/Put', [encodeDirectory(wide(ENTRIES, 4))])
      assert.equal(tooLarge.code, 8, tooLarge.details)
      assert.equal((await grpc.unary(GET, getDirectoryRequest.encode({ digest: b3(tooMany), recursive: false }))).code, 5)

      const dir = wide(MAX_ENTRIES, 3)
      const fits = encodeDirectory(dir)
      const stored = await grpc.clientStream('/tvix.castore.v1.DirectoryService/Put', [fits])
      assert.equal(stored.code, 0, stored.details)
      // A Get answers a stream: here of one message, the Directory.
      const back = await grpc.unary(GET, getDirectoryRequest.encode({ digest: b3(fits), recursive: false }))
      assert.equal(back.code, 0, back.details)
      assert.ok(back.response!.equals(fits), 'the Directory read back is the one put')
      const calc = await grpc.unary(CALC, encodeNode({ kind: 'directory', name: EMPTY, digest: b3(fits), size: directorySize(dir) }))
      assert.equal(calc.code, 0, calc.details)
      // Concatenated, not spread: that many arguments overflow the stack.
      const expected = nar(Buffer.concat([toks('(', 'type', 'directory'), ...Array.from({ length: MAX_ENTRIES }, (_, i) => entry(shortName(i, 3), regular(''))), toks(')')]))
      const res = calculateNarResponse.decode(calc.response!)
      assert.equal(res.narSize, expected.length)
      assert.equal(toHex(res.narSha256), createHash('sha256').update(expected).digest('hex'))
    })
  })

})

describe('a daemon serving a stored Directory as wide as one message holds', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-wide-get-'))
  const store = path.join(root, 'store')
  let daemon: RunningDaemon
  let grpc: RawGrpc
  after(async () => {
    grpc?.close()
    await daemon?.stop()
    fs.rmSync(root, { recursive: true, force: true })
  })

  test(`Gets of a stored Directory of ${STORED_ENTRIES} entries (imported, so under no Put cap) send its stored bytes, the daemon's memory bounded`, async (t) => {
    // Put straight into the local store, as an import of a folder that wide would.
    const dir = wide(STORED_ENTRIES, 4)
    const bytes = encodeDirectory(dir)
    const parent: Directory = { directories: [{ kind: 'directory', name: Buffer.from('wide'), digest: b3(bytes), size: directorySize(dir) }], files: [], symlinks: [] }
    const local = await openStore({ url: store })
    try {
      await local.directories.putClosure([dir, parent])
    } finally {
      await local.close()
    }
    const top = b3(encodeDirectory(parent))
    // Its own daemon, for a baseline no other case raised; half the default --max-transfers:
    // each Get of a 3.8 MB Directory holds two copies of it (ours and grpc-js's frame) until
    // sent: 16 at once reach ~205 MiB (they reached ~420 when each was decoded and re-encoded).
    daemon = await startDaemon(store, '127.0.0.1:0', ['--max-transfers', String(GETS)])
    grpc = new RawGrpc(daemon.url)
    await rssBounded(t, { pid: daemon.proc.pid!, url: daemon.url }, `${GETS} Gets of a ${bytes.length}-byte Directory at once`, async () => {
      const single = Array.from({ length: GETS / 2 }, () => grpc.unary(GET, getDirectoryRequest.encode({ digest: b3(bytes), recursive: false })))
      const closures = Array.from({ length: GETS / 2 }, () => grpc.serverStream(GET, getDirectoryRequest.encode({ digest: top, recursive: true })))
      for (const r of await Promise.all(single)) {
        assert.equal(r.code, 0, r.details)
        assert.ok(r.response!.equals(bytes), 'the stored bytes')
      }
      for (const r of await Promise.all(closures)) {
        assert.equal(r.code, 0, r.details)
        assert.equal(r.messages.length, 2)
        assert.ok(r.messages[0]!.equals(encodeDirectory(parent)) && r.messages[1]!.equals(bytes), 'the root, then its child')
      }
    })
  })
})

const empty = b3(EMPTY)
/** A Directory of `entries` empty files named `width` letters each. */
const wide = (entries: number, width: number): Directory => ({
  directories: [],
  files: Array.from({ length: entries }, (_, i) => ({ kind: 'file' as const, name: Buffer.from(shortName(i, width)), digest: empty, size: 0, executable: false })),
  symlinks: [],
})

/** The `i`th of the names of `width` letters from a 47-letter alphabet ('A'…'o'), in byte order. */
function shortName(i: number, width: number): string {
  let s = ''
  for (let k = 0; k < width; k++, i = Math.floor(i / 47)) s = String.fromCharCode(0x41 + (i % 47)) + s
  return s
}

