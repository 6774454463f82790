import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Client, credentials, status } from '@grpc/grpc-js'
import { openGrpcStore } from '../../src/backends/grpc/index.js'
import { openLocalStore, type LocalStore } from '../../src/backends/local/index.js'
import { readAll } from '../../src/castore/blob-service.js'
import { b3 } from '../../src/castore/digest.js'
import { directoryDigest } from '../../src/castore/directory.js'
import { parseListen } from '../../src/daemon/listen.js'
import { startDaemon, type Daemon } from '../../src/daemon/server.js'
import { AlreadyExistsError, MissingDataError } from '../../src/errors.js'
import { importPath } from '../../src/ops/import-paths.js'
import { encodeDirectory } from '../../src/castore/proto.js'
import { encodePathInfo } from '../../src/store/proto.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import { CaHash, type PathInfo } from '../../src/store/path-info.js'
import { makeSourcePath } from '../../src/store/store-path.js'
import type { Store } from '../../src/store/store.js'
import { nar, regular } from '../helpers/nar.js'

/**
 * Small attack clients against an in-process daemon over loopback: each
 * tries to put into the store what the admission check must refuse, with
 * raw grpc-js calls (no client-side validation in the way), and the store
 * must stay as it was.
 */
describe('daemon PathInfo admission against hostile clients', () => {
  let dir: string
  let store: LocalStore
  let daemon: Daemon
  let client: Client
  let honest: { storePath: string; info: PathInfo }
  const raw = (b: Buffer) => b

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-admission-'))
    fs.writeFileSync(path.join(dir, 'hw'), 'Hello World!')
    store = await openLocalStore(path.join(dir, 'store'))
    honest = await importPath(store, path.join(dir, 'hw'))
    // Content for the attackers to point at: stored blobs, so only the rule under test fails.
    await store.blobs.put(Buffer.from('evil payload'))
    await store.blobs.put(Buffer.from('0123456789ab'))
    daemon = await startDaemon(store, parseListen('127.0.0.1:0'), () => {})
    client = new Client(daemon.url.replace('grpc+http://', ''), credentials.createInsecure())
  })
  after(async () => {
    client.close()
    await daemon.shutdown()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const putPathInfo = (info: PathInfo) =>
    new Promise<{ code: number; details?: string }>((resolve) => {
      client.makeUnaryRequest('/tvix.store.v1.PathInfoService/Put', raw, raw, Buffer.from(encodePathInfo(info)), (err) =>
        resolve(err ? { code: err.code, details: err.details } : { code: status.OK }),
      )
    })
  const putDirectory = (bytes: Uint8Array) =>
    new Promise<{ code: number; details?: string }>((resolve) => {
      const call = client.makeClientStreamRequest('/tvix.castore.v1.DirectoryService/Put', raw, raw, (err) =>
        resolve(err ? { code: err.code, details: err.details } : { code: status.OK }),
      )
      call.write(Buffer.from(bytes))
      call.end()
    })

  const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest()
  const madeUp = (tag: string) => `${nixbase32.encode(sha256(tag).subarray(0, 20))}-${tag}`
  const digestOf = (basename: string) => nixbase32.decode(basename.slice(0, 32))
  const fileInfo = (basename: string, content: string, extra: { size?: number; refs?: string[] } = {}): PathInfo => ({
    node: { kind: 'file', name: Buffer.from(basename), digest: b3(Buffer.from(content)), size: extra.size ?? content.length, executable: false },
    references: (extra.refs ?? []).map(digestOf),
    narinfo: { narSize: 1, narSha256: sha256('made up'), signatures: [], referenceNames: extra.refs ?? [] },
  })
  const stored = async (basename: string) => store.pathInfos.get(digestOf(basename))

  test('a stored path is never replaced: ALREADY_EXISTS, and the original is still served', async () => {
    const basename = path.basename(honest.storePath)
    const r = await putPathInfo(fileInfo(basename, 'evil payload'))
    assert.equal(r.code, status.ALREADY_EXISTS, r.details)
    assert.equal(r.details, `path '${honest.storePath}' is already in the store with different content; a stored path is never replaced`)
    assert.deepEqual(encodePathInfo((await stored(basename))!), encodePathInfo(honest.info))
    const root = honest.info.node as { digest: Uint8Array }
    assert.equal((await readAll((await store.blobs.open(root.digest))!)).toString(), 'Hello World!')
    // The very same PathInfo again is fine (idempotent), and the answer is what is stored.
    assert.equal((await putPathInfo(honest.info)).code, status.OK)
  })

  test('the gRPC client backend raises the same error classes as a local store', async () => {
    const remote: Store = openGrpcStore(daemon.url.replace('grpc+http://', ''), daemon.url, '/nix/store')
    try {
      await assert.rejects(remote.pathInfos.put(fileInfo(path.basename(honest.storePath), 'evil payload')), AlreadyExistsError)
      await assert.rejects(remote.pathInfos.put(fileInfo(madeUp('remote-ref'), 'evil payload', { refs: [madeUp('absent')] })), MissingDataError)
    } finally {
      await remote.close()
    }
  })

  test('two clients racing different content for a new path: exactly one wins, every round', async () => {
    for (let round = 0; round < 10; round++) {
      const basename = madeUp(`race-${round}`)
      const results = await Promise.all([putPathInfo(fileInfo(basename, 'evil payload')), putPathInfo(fileInfo(basename, '0123456789ab'))])
      const codes = results.map((r) => r.code).sort()
      assert.deepEqual(codes, [status.OK, status.ALREADY_EXISTS].sort(), JSON.stringify(results))
      const winner = results[0]!.code === status.OK ? 'evil payload' : '0123456789ab'
      assert.deepEqual(encodePathInfo((await stored(basename))!), encodePathInfo(fileInfo(basename, winner)))
    }
  })

  test('references must be stored and listed once', async () => {
    const absent = madeUp('absent')
    const r1 = await putPathInfo(fileInfo(madeUp('dangling'), 'evil payload', { refs: [absent] }))
    assert.equal(r1.code, status.FAILED_PRECONDITION, r1.details)
    assert.equal(r1.details, `PathInfo refers to a path the store does not have: /nix/store/${absent}`)
    const self = madeUp('dups')
    const r2 = await putPathInfo(fileInfo(self, 'evil payload', { refs: Array(300).fill(self) }))
    assert.equal(r2.code, status.INVALID_ARGUMENT, r2.details)
    assert.match(r2.details!, /^invalid PathInfo: reference 1 \(\S+-dups\) is listed twice$/)
    assert.equal(await stored(madeUp('dangling')), undefined)
    assert.equal(await stored(self), undefined)
  })

  test('a content-addressed path must be the one its CA gives, with the NAR its tree renders to', async () => {
    const fake = sha256('not the NAR of anything')
    const liar = fileInfo(`${nixbase32.encode(makeSourcePath(fake, 'liar').digest)}-liar`, 'evil payload')
    const narSize = nar(regular('evil payload')).length
    liar.narinfo = { ...liar.narinfo!, narSize, narSha256: fake, ca: { type: CaHash.NAR_SHA256, digest: fake } }
    const r1 = await putPathInfo(liar)
    assert.equal(r1.code, status.INVALID_ARGUMENT, r1.details)
    assert.equal(r1.details, `invalid PathInfo: the tree's NAR has hash sha256:${nixbase32.encode(sha256(nar(regular('evil payload'))))} and size ${narSize}, not the sha256:${nixbase32.encode(fake)} and ${narSize} given`)
    // The honest CA, under a name it does not give.
    const renamed = { ...honest.info, node: { ...honest.info.node, name: Buffer.from(madeUp('hw')) } }
    const r2 = await putPathInfo(renamed)
    assert.equal(r2.code, status.INVALID_ARGUMENT, r2.details)
    assert.match(r2.details!, /is not the store path its content address gives$/)
    assert.equal(await stored(Buffer.from(liar.node.name).toString()), undefined)
  })

  test('sizes must be what the blobs hold, in Directories and in PathInfo root nodes', async () => {
    const lying = { directories: [], files: [{ kind: 'file' as const, name: Buffer.from('f'), digest: b3(Buffer.from('0123456789ab')), size: 5, executable: false }], symlinks: [] }
    const r1 = await putDirectory(encodeDirectory(lying))
    assert.equal(r1.code, status.INVALID_ARGUMENT, r1.details)
    assert.match(r1.details!, /^directory entry: file "f" claims 5 bytes, but blob b3:\S+ has 12$/)
    assert.equal(await store.directories.get(directoryDigest(lying)), undefined)
    const r2 = await putPathInfo(fileInfo(madeUp('big'), '0123456789ab', { size: 999999 }))
    assert.equal(r2.code, status.INVALID_ARGUMENT, r2.details)
    assert.match(r2.details!, /claims 999999 bytes, but blob b3:\S+ has 12$/)
    assert.equal(await stored(madeUp('big')), undefined)
  })
})
