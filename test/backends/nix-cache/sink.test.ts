/**
 * The binary-cache writer in-process (src/backends/nix-cache/sink.ts and
 * the copy op over it): what it writes into a folder and what it sends to
 * an HTTP server, its faults and refusals. That real Nix reads what it
 * writes is test/e2e/binary-cache-target.test.ts.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { after, before, describe, test } from 'node:test'
import { parseCacheUrl } from '../../../src/backends/nix-cache/cache-url.js'
import { openNarSink } from '../../../src/backends/nix-cache/sink.js'
import { decompressor } from '../../../src/codecs/index.js'
import { openStore } from '../../../src/backends/open-store.js'
import { copyFromCache } from '../../../src/ops/copy-from-cache.js'
import { copyToCache } from '../../../src/ops/copy-to-cache.js'
import { importPath } from '../../../src/ops/import-paths.js'
import type { NarSinkCapable, NarSource } from '../../../src/store/capabilities.js'
import { renderNar } from '../../../src/store/nar/render.js'
import * as nixbase32 from '../../../src/store/nixbase32.js'
import { parseNarInfo, pathInfoFromNarInfo } from '../../../src/store/narinfo.js'
import type { PathInfo } from '../../../src/store/path-info.js'
import { generateSecretKey, hasValidSignature, publicKeyOf, renderSecretKey } from '../../../src/store/signing.js'
import type { Store } from '../../../src/store/store.js'
import { type FileCacheServer, startFileCacheServer } from '../../helpers/file-cache-server.js'
import { memoryStore } from '../../helpers/ops.js'
import { makeTree } from '../../helpers/trees.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-cache-sink-'))
const STORE_DIR = '/nix/store'
const key = generateSecretKey('sink-test-1')
const keyFile = path.join(root, 'secret.key')
fs.writeFileSync(keyFile, renderSecretKey(key))

let source: Store
let tree: { path: string; info: PathInfo }
let twin: { path: string; info: PathInfo }

before(async () => {
  source = await memoryStore()
  const dir = makeTree(root, 'mixed', 'tree')
  const a = await importPath(source, dir)
  // The same tree under another name: another store path, the same NAR.
  const b = await importPath(source, dir, { name: 'twin' })
  tree = { path: a.storePath, info: a.info }
  twin = { path: b.storePath, info: b.info }
})

/** A target for copyToCache: the cache URL's sink, with the store dir. */
async function cacheTarget(url: string): Promise<Store & NarSinkCapable> {
  const narSink = await openNarSink(parseCacheUrl(url), STORE_DIR)
  return { storeDir: STORE_DIR, narSink, close: () => narSink.close() } as unknown as Store & NarSinkCapable
}

const hashPart = (p: string) => path.basename(p).slice(0, 32)
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest()
const narOf = (info: PathInfo) => buffer(Readable.from(renderNar(info.node, source)))
const tempsIn = (dir: string) => fs.readdirSync(dir).filter((f) => f.startsWith('.tvix-tmp-'))

/** Checks the narinfo of `p` in the folder cache: its NAR file is named by and hashes to FileHash, and unpacks to the path's NAR. */
async function checkWritten(dir: string, p: { path: string; info: PathInfo }, compression: string): Promise<ReturnType<typeof parseNarInfo>> {
  const fields = parseNarInfo(fs.readFileSync(path.join(dir, `${hashPart(p.path)}.narinfo`), 'utf8'), STORE_DIR)
  assert.equal(fields.storePath, p.path)
  assert.equal(fields.compression, compression)
  const file = fs.readFileSync(path.join(dir, fields.url))
  const fileHash = nixbase32.encode(sha256(file))
  assert.equal(fields.fileHash, `sha256:${fileHash}`)
  assert.equal(fields.fileSize, file.length)
  assert.match(fields.url, new RegExp(`^nar/${fileHash}\\.nar${{ none: '', xz: '.xz', zstd: '.zst', bzip2: '.bz2', br: '.br' }[compression]}$`))
  const nar = await buffer(Readable.from([file]).pipe(decompressor(compression)))
  assert.ok(nar.equals(await narOf(p.info)))
  assert.equal(fields.narHash, `sha256:${nixbase32.encode(sha256(nar))}`)
  assert.equal(fields.narSize, nar.length)
  return fields
}

describe('copy into a nix+file:// cache', () => {
  const dir = path.join(root, 'folder-cache')

  test('nix-cache-info, the NAR file named by its hash, the narinfo signed; a NAR shared by two paths is written once', async () => {
    const to = await cacheTarget(`nix+file://${dir}?compression=zstd&secret-key=${keyFile}`)
    const seen: Array<{ pathsDone: number; pathsTotal: number; bytes: number }> = []
    const report = await copyToCache(source, to, [tree.path, twin.path], { parallel: 1, onProgress: (p) => seen.push(p) })
    assert.deepEqual(report.copied, [tree.path, twin.path].sort())
    assert.equal(fs.readFileSync(path.join(dir, 'nix-cache-info'), 'utf8'), 'StoreDir: /nix/store\n')
    const a = await checkWritten(dir, tree, 'zstd')
    const b = await checkWritten(dir, twin, 'zstd')
    assert.equal(a.url, b.url)
    assert.equal(report.bytes, a.fileSize)
    // Progress counts each NAR as it is compressed, the one found written already too.
    assert.deepEqual([seen[0], seen.at(-1)], [{ pathsDone: 0, pathsTotal: 2, bytes: 0 }, { pathsDone: 2, pathsTotal: 2, bytes: 2 * a.fileSize! }])
    assert.ok(seen.some((p) => p.pathsDone === 0 && p.bytes > 0), 'progress while the first NAR is compressed')
    assert.deepEqual(fs.readdirSync(path.join(dir, 'nar')), [a.url.slice(4)])
    // One Sig, by the URL's key, over Nix's fingerprint.
    assert.equal(a.sigs.length, 1)
    assert.ok(hasValidSignature(pathInfoFromNarInfo(a, tree.info.node, STORE_DIR), [publicKeyOf(key)], STORE_DIR))
    assert.deepEqual(tempsIn(dir), [])

    const again = await copyToCache(source, await cacheTarget(`nix+file://${dir}?compression=zstd`), [tree.path])
    assert.deepEqual([again.copied, again.skipped, again.bytes], [[], [tree.path], 0])
  })

  test('a cache for another store dir is refused, naming both', async () => {
    const other = path.join(root, 'gnu-cache')
    fs.mkdirSync(other)
    fs.writeFileSync(path.join(other, 'nix-cache-info'), 'StoreDir: /gnu/store\n')
    await assert.rejects(copyToCache(source, await cacheTarget(`nix+file://${other}`), [tree.path]), /binary cache 'nix\+file:\/\/.*gnu-cache' is for Nix stores with prefix '\/gnu\/store', not '\/nix\/store'/)
    assert.deepEqual(fs.readdirSync(other), ['nix-cache-info'])
  })

  test('a path whose NAR is not its recorded NarHash publishes nothing', async () => {
    const liar = path.join(root, 'liar-cache')
    const sink = await openNarSink(parseCacheUrl(`nix+file://${liar}?compression=none`), STORE_DIR)
    const info = { ...tree.info, narinfo: { ...tree.info.narinfo!, narSha256: new Uint8Array(32) } }
    await assert.rejects(sink.putPath(info, () => renderNar(info.node, source)), /does not match its recorded NAR hash and size/)
    assert.deepEqual(fs.readdirSync(liar).sort(), ['nar', 'nix-cache-info'])
    assert.deepEqual(fs.readdirSync(path.join(liar, 'nar')), [])
  })

  test('bad URL settings are one clear error each, before anything is written', async () => {
    const cases: Array<[string, RegExp]> = [
      ['compression=lz4', /cannot write "lz4" compression to a binary cache; \?compression= takes none, xz, zstd, bzip2, br, gzip/],
      [`secret-key=${root}/absent.key`, /cannot read the secret key file .*absent\.key \(\?secret-key=\): it does not exist/],
      [`secret-key=${root}/tree`, /cannot read the secret key file .*tree \(\?secret-key=\)/],
    ]
    for (const [query, re] of cases) {
      const never = path.join(root, 'never')
      await assert.rejects(copyToCache(source, await cacheTarget(`nix+file://${never}?${query}`), [tree.path]), re)
      assert.equal(fs.existsSync(never), false, query)
    }
  })
})

test('from another binary cache, a path needs a trusted signature (or a content address) before anything is written, as with copy --from', async () => {
  // An input-addressed path (no CA): only a signature can vouch for it.
  const bare = { ...tree.info, node: { ...tree.info.node, name: Buffer.from('00000000000000000000000000000000-bare') }, narinfo: { ...tree.info.narinfo!, ca: undefined } }
  const withBare = await memoryStore()
  await importPath(withBare, path.join(root, 'tree'))
  await withBare.pathInfos.put(bare)
  const barePath = `${STORE_DIR}/00000000000000000000000000000000-bare`
  const signed = path.join(root, 'signed-source')
  const unsigned = path.join(root, 'unsigned-source')
  await copyToCache(withBare, await cacheTarget(`nix+file://${signed}?compression=none&secret-key=${keyFile}`), [barePath])
  await copyToCache(withBare, await cacheTarget(`nix+file://${unsigned}?compression=none`), [barePath])

  const copyBetween = async (fromDir: string, toDir: string, opts: Parameters<typeof copyToCache>[3]) => {
    const from = await openStore({ url: `nix+file://${fromDir}`, storeDir: STORE_DIR, mustExist: true })
    try {
      return await copyToCache(from, await cacheTarget(`nix+file://${toDir}?compression=none&secret-key=${keyFile}`), [barePath], opts)
    } finally {
      await from.close()
    }
  }
  const refused = path.join(root, 'refused-target')
  await assert.rejects(copyBetween(unsigned, refused, {}), /cannot add path '\/nix\/store\/0{32}-bare' from binary cache 'nix\+file:\/\/.*unsigned-source': it lacks a valid signature by a trusted key/)
  await assert.rejects(copyBetween(signed, refused, { trustedKeys: [] }), /lacks a valid signature by a trusted key/)
  assert.deepEqual(fs.readdirSync(refused).filter((f) => f.endsWith('.narinfo')), [])
  assert.deepEqual((await copyBetween(signed, path.join(root, 'trusted-target'), { trustedKeys: [publicKeyOf(key)] })).copied, [barePath])
  assert.deepEqual((await copyBetween(unsigned, path.join(root, 'unchecked-target'), { checkSigs: false })).copied, [barePath])
})

test('read back from an uncompressed cache (FileHash = NarHash): a byte flipped or appended in the NAR file is refused, and nothing is stored', async () => {
  const dir = path.join(root, 'plain-cache')
  await copyToCache(source, await cacheTarget(`nix+file://${dir}?compression=none`), [tree.path])
  const fields = await checkWritten(dir, tree, 'none')
  assert.equal(fields.fileHash, fields.narHash, 'Nix names an uncompressed NAR by its NAR hash')
  const file = path.join(dir, fields.url)
  const honest = fs.readFileSync(file)
  const copyFrom = async () => {
    const from = await openStore({ url: `nix+file://${dir}`, storeDir: STORE_DIR, mustExist: true })
    const to = await memoryStore()
    try {
      return { report: await copyFromCache(from as Store & NarSource, to, [tree.path], { checkSigs: false }), to }
    } catch (e) {
      assert.equal(await to.pathInfos.get(nixbase32.decode(hashPart(tree.path))), undefined)
      throw e
    } finally {
      await from.close()
    }
  }
  // A byte of a file's contents: the NAR still parses, only its hash tells.
  let at = honest.indexOf('contents')
  while (honest.readBigUInt64LE(at + 8) === 0n) at = honest.indexOf('contents', at + 8)
  const flipped = Buffer.from(honest)
  flipped[at + 16]! ^= 0xff
  fs.writeFileSync(file, flipped)
  await assert.rejects(copyFrom(), /NAR hash mismatch: the narinfo says sha256:\S+, the NAR has sha256:/)
  fs.writeFileSync(file, Buffer.concat([honest, Buffer.alloc(8)]))
  // Whichever notices first: the NAR reader the bytes after its end, or the FileSize check at the file's end.
  await assert.rejects(copyFrom(), new RegExp(`trailing data after the end of the archive|file '${fields.url}' has ${honest.length + 8} bytes, not the FileSize ${honest.length}`))
  fs.writeFileSync(file, honest)
  const { report, to } = await copyFrom()
  assert.deepEqual(report.copied, [tree.path])
  assert.ok((await buffer(Readable.from(renderNar((await to.pathInfos.get(nixbase32.decode(hashPart(tree.path))))!.node, to)))).equals(await narOf(tree.info)))
})

describe('copy into an http:// cache', () => {
  const dir = path.join(root, 'http-cache')
  let server: FileCacheServer
  before(async () => {
    fs.mkdirSync(dir)
    server = await startFileCacheServer(dir, { writable: true })
  })
  after(() => server.close())

  test('as Nix: nix-cache-info, HEADs, then the NAR and the narinfo PUT whole with their lengths and types', async () => {
    const to = await cacheTarget(`${server.url}?compression=xz`)
    try {
      const report = await copyToCache(source, to, [tree.path])
      assert.deepEqual(report.copied, [tree.path])
    } finally {
      await to.close()
    }
    const fields = await checkWritten(dir, tree, 'xz')
    const h = hashPart(tree.path)
    assert.deepEqual(server.requests, ['GET /nix-cache-info', 'PUT /nix-cache-info', `HEAD /${h}.narinfo`, `HEAD /${fields.url}`, `PUT /${fields.url}`, `PUT /${h}.narinfo`])
    const puts = server.requests.flatMap((r, i) => (r.startsWith('PUT ') ? [server.headers[i]!] : []))
    assert.deepEqual(
      puts.map((x) => [x['content-type'], x['transfer-encoding']]),
      [['text/x-nix-cache-info', undefined], ['application/x-nix-nar', undefined], ['text/x-nix-narinfo', undefined]],
    )
    assert.equal(puts[1]!['content-length'], String(fields.fileSize))
    // The NAR was spooled in the temp dir, and is gone.
    assert.deepEqual(tempsIn(os.tmpdir()), [])
    assert.equal(fs.readFileSync(path.join(dir, 'nix-cache-info'), 'utf8'), 'StoreDir: /nix/store\n')
  })

  test('a 5xx on a PUT is retried and the copy succeeds', async () => {
    server.requests.length = 0
    server.faults.match = /^\/nar\//
    server.faults.method = 'PUT'
    server.faults.status = 500
    server.faults.times = 1
    const to = await cacheTarget(`${server.url}?compression=none`)
    try {
      assert.deepEqual((await copyToCache(source, to, [twin.path])).copied, [twin.path])
    } finally {
      await to.close()
    }
    await checkWritten(dir, twin, 'none')
    assert.equal(server.requests.filter((r) => /^PUT \/nar\//.test(r)).length, 2)
  })

  test('a server that takes no uploads: one error naming nix-cache-info and its reason', async () => {
    const empty = path.join(root, 'read-only')
    fs.mkdirSync(empty)
    const readOnly = await startFileCacheServer(empty)
    const to = await cacheTarget(readOnly.url)
    try {
      await assert.rejects(copyToCache(source, to, [tree.path]), new RegExp(`^BackendError: cannot upload nix-cache-info to ${readOnly.url}: HTTP 403: read-only$`))
      assert.deepEqual(readOnly.requests, ['GET /nix-cache-info', 'PUT /nix-cache-info'])
    } finally {
      await to.close()
      await readOnly.close()
    }
  })

  test('a 4xx on a PUT is one error with the server\'s reason, and no narinfo', async () => {
    const fresh = path.join(root, 'refusing')
    fs.mkdirSync(fresh)
    const refusing = await startFileCacheServer(fresh, { writable: true })
    const to = await cacheTarget(`${refusing.url}?compression=none`)
    try {
      refusing.faults.match = /\.narinfo$/
      refusing.faults.method = 'PUT'
      refusing.faults.status = 413
      refusing.faults.times = 1
      await assert.rejects(copyToCache(source, to, [tree.path]), new RegExp(`^BackendError: cannot upload ${hashPart(tree.path)}\\.narinfo to ${refusing.url}: HTTP 413: injected 413$`))
      assert.equal(fs.existsSync(path.join(fresh, `${hashPart(tree.path)}.narinfo`)), false)
      assert.equal(refusing.requests.filter((r) => r.startsWith('PUT /') && r.endsWith('.narinfo')).length, 1)
      assert.deepEqual(tempsIn(os.tmpdir()), [])
    } finally {
      await to.close()
      await refusing.close()
    }
  })
})
