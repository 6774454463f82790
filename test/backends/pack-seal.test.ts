import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { openLocalStore } from '../../src/backends/local/index.js'
import { PACK_SUFFIX, readManifest } from '../../src/backends/local/pack.js'
import type { ImmediateReads } from '../../src/castore/blob-service.js'
import type { B3Digest } from '../../src/castore/digest.js'
import { toHex } from '../../src/castore/digest.js'
import type { Store } from '../../src/store/store.js'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { randomBytes } from '../helpers/trees.js'

/** What a read gave before it failed (or all of it), and how it failed. */
async function drain(store: Store, digest: B3Digest): Promise<{ got: Buffer; error?: Error }> {
  const parts: Uint8Array[] = []
  try {
    for await (const c of (await store.blobs.open(digest))!) parts.push(Buffer.from(c))
    return { got: Buffer.concat(parts) }
  } catch (e) {
    return { got: Buffer.concat(parts), error: e as Error }
  }
}

/** A pack's payload and manifest, as the trailer (u32le length, "TVXPACK1") places them. */
function splitPack(file: string): { payload: Buffer; manifest: Buffer } {
  const bytes = fs.readFileSync(file)
  const len = bytes.readUInt32LE(bytes.length - 12)
  return { payload: bytes.subarray(0, bytes.length - 12 - len), manifest: bytes.subarray(bytes.length - 12 - len, bytes.length - 12) }
}

function writePack(file: string, payload: Buffer, manifest: Buffer): void {
  const len = Buffer.alloc(4)
  len.writeUInt32LE(manifest.length)
  fs.chmodSync(file, 0o644)
  fs.writeFileSync(file, Buffer.concat([payload, manifest, len, Buffer.from('TVXPACK1')]))
}

/**
 * A large blob's manifest is sealed (BLAKE3 of the blob digest and the
 * entries): a reader that finds the seal right checks each chunk and skips
 * the whole-blob check, so the seal must catch any damage to the manifest
 * before a byte is read. A manifest without a seal (a pack written before
 * seals) is read as before: each chunk, then the whole blob.
 */
describe('sealed pack manifests', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-pack-seal-'))
  const storeDir = path.join(root, 'store')
  const file = path.join(root, 'big.bin')
  // Random: every chunk stored raw.
  const data = randomBytes(3 << 20, 5)
  let store: Store
  let digest: B3Digest
  let pack: string
  let original: { payload: Buffer; manifest: Buffer }

  before(async () => {
    fs.writeFileSync(file, data)
    store = await openLocalStore(storeDir)
    digest = (await store.blobs.put(data)).digest
    pack = path.join(storeDir, 'blobs/b3', toHex(digest).slice(0, 2), `${toHex(digest)}${PACK_SUFFIX}`)
    original = splitPack(pack)
  })
  after(async () => {
    await store?.close()
    fs.rmSync(root, { recursive: true, force: true })
  })
  /** Each test starts from the pack as written. */
  const restore = () => writePack(pack, original.payload, original.manifest)

  test('a written pack is sealed and reads back whole', async () => {
    const { manifest } = original
    const count = manifest.readUInt32LE(0)
    assert.ok(count > 10, `${count} chunks`)
    assert.equal(manifest.length, 4 + 50 * count + 36, 'entries (all in this pack), then the seal')
    assert.equal(manifest.subarray(-36, -32).toString(), 'B3S1')
    const r = await drain(store, digest)
    assert.equal(r.error, undefined)
    assert.ok(r.got.equals(data))
  })

  test('pieces of open() may be kept (fresh buffers); a lent read, used piece by piece, gives the same bytes', async () => {
    const kept: Uint8Array[] = []
    for await (const c of (await store.blobs.open(digest))!) kept.push(c)
    assert.ok(Buffer.concat(kept).equals(data), 'pieces kept unread until the end are intact')
    const lent = (store.blobs as unknown as ImmediateReads).openNow(digest, data.length, true) as AsyncIterable<Uint8Array>
    const copies: Buffer[] = []
    for await (const c of lent) copies.push(Buffer.from(c))
    assert.ok(Buffer.concat(copies).equals(data))
  })

  test('a flipped byte anywhere in a sealed manifest fails the read before any byte', async () => {
    const m = original.manifest
    const at = { count: 0, digest: 4 + 50 + 5, size: 4 + 100 + 32, stored: 4 + 150 + 36, offset: 4 + 200 + 40, where: 4 + 250 + 49, tag: m.length - 36, seal: m.length - 1 }
    for (const [what, i] of Object.entries(at)) {
      const bad = Buffer.from(m)
      bad[i]! ^= 0x01
      writePack(pack, original.payload, bad)
      try {
        const r = await drain(store, digest)
        assert.match(String(r.error), /corrupt manifest/, `${what}: ${r.error}`)
        assert.equal(r.got.length, 0, `${what}: no byte read`)
        assert.throws(() => readManifest(pack, toHex(digest)), /corrupt manifest/, what)
      } finally {
        restore()
      }
    }
  })

  test('a sealed manifest that lost its last chunk, seal kept, fails before any byte', async () => {
    const m = original.manifest
    const entries = Buffer.from(m.subarray(0, m.length - 36 - 50))
    entries.writeUInt32LE(m.readUInt32LE(0) - 1)
    writePack(pack, original.payload, Buffer.concat([entries, m.subarray(m.length - 36)]))
    try {
      const r = await drain(store, digest)
      assert.match(String(r.error), /corrupt manifest/)
      assert.equal(r.got.length, 0)
    } finally {
      restore()
    }
  })

  test('an unsealed manifest (a pack from before seals) reads back, and is still checked whole', async () => {
    const entries = original.manifest.subarray(0, original.manifest.length - 36)
    writePack(pack, original.payload, entries)
    try {
      const r = await drain(store, digest)
      assert.equal(r.error, undefined)
      assert.ok(r.got.equals(data))
      // Its last chunk dropped from the list: every chunk it lists is good, the whole is not the blob.
      const shorter = Buffer.from(entries.subarray(0, entries.length - 50))
      shorter.writeUInt32LE(entries.readUInt32LE(0) - 1)
      writePack(pack, original.payload, shorter)
      const s = await drain(store, digest)
      assert.match(String(s.error), /corrupt/)
      assert.ok(s.got.length < data.length - 16384, `${s.got.length} bytes out`)
      assert.ok(s.got.equals(data.subarray(0, s.got.length)), 'only true bytes out')
    } finally {
      restore()
    }
  })

  test('a flipped byte in a small blob fails its read before any byte', async () => {
    const small = randomBytes(5000, 6)
    const d = (await store.blobs.put(small)).digest
    const plain = path.join(storeDir, 'blobs/b3', toHex(d).slice(0, 2), toHex(d))
    fs.chmodSync(plain, 0o644)
    const bytes = fs.readFileSync(plain)
    bytes[4000]! ^= 0x01
    fs.writeFileSync(plain, bytes)
    const r = await drain(store, d)
    assert.match(String(r.error), /corrupt/)
    assert.equal(r.got.length, 0)
  })

  test('export-nar of the sealed blob writes what nix-store --dump writes; cat of a damaged manifest writes nothing', { skip: nixMissing() }, async () => {
    const imported = await runCli(['import', '--store', storeDir, file])
    assert.equal(imported.code, 0, imported.stderr)
    const storePath = imported.stdout.toString().trim()
    const e = await runCli(['export-nar', '--store', storeDir, storePath])
    assert.equal(e.code, 0, e.stderr)
    assert.ok(e.stdout.equals(NixStore.dump(file)), 'same bytes as nix-store --dump')
    const bad = Buffer.from(original.manifest)
    bad[4 + 50 * 3 + 40]! ^= 0x01
    writePack(pack, original.payload, bad)
    try {
      for (const args of [['cat', storePath], ['export-nar', storePath]]) {
        const r = await runCli([args[0]!, '--store', storeDir, args[1]!])
        assert.equal(r.code, 1, r.stderr)
        assertOneErrorLine(r.stderr, /corrupt manifest/)
        // export-nar may have written the NAR's header before the file's contents, never a byte of them.
        assert.ok(r.stdout.length < 200, `${args[0]}: ${r.stdout.length} bytes out`)
      }
    } finally {
      restore()
    }
  })
})
