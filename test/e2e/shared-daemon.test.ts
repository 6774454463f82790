/**
 * A daemon on S3 + PostgreSQL against real servers and real Nix: the Nix
 * interop trees import to `nix-store --add`'s paths and export
 * `nix-store --dump`'s bytes through it; and PostgreSQL or S3 going away
 * in the middle of an import (through the CLI, and through a daemon) is
 * one clear error line, leaves nothing half-registered (verify is clean:
 * no PathInfo whose tree or blobs are missing), and the same import
 * succeeds once the server is back.
 *
 * The shared servers must not be stopped, so each test puts a TCP proxy of
 * its own (test/helpers/cut-proxy.ts) between the store and the server and
 * cuts it: to the client that is the server stopping (connections reset,
 * new ones refused), at the moment the client sends a chosen statement or
 * request, and it costs nothing to start, where a radosgw of our own costs
 * seconds of CPU on a shared machine.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { CutProxy } from '../helpers/cut-proxy.js'
import { freePort, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { exportNarOf, withStore } from '../helpers/ops.js'
import { backendsForTests, freshBucket, freshDatabase } from '../helpers/suite-servers.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

const servers = await backendsForTests()
const skip = typeof servers === 'string' ? servers : nixMissing()

describe('a daemon on S3 + PostgreSQL', { skip }, () => {
  const { s3, pg: pgInfo } = typeof servers === 'string' ? { s3: undefined, pg: undefined } : servers
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-shared-daemon-'))
  const nix = new NixStore(path.join(cwd, 'nix'))
  const closing: Array<() => Promise<unknown>> = []
  after(async () => {
    for (const c of closing.reverse()) await c()
  })

  /** A fresh bucket and database: the flags of every service, straight to the servers (`direct`) and through the proxies given (`flags`). */
  async function services(via: { s3?: CutProxy; pg?: CutProxy } = {}) {
    const db = await freshDatabase(pgInfo!)
    closing.push(db.drop)
    const bucket = await freshBucket(s3!)
    const bucketVia = new URL(bucket)
    if (via.s3) bucketVia.searchParams.set('endpoint', `http://127.0.0.1:${via.s3.port}`)
    const dbVia = new URL(db.url)
    if (via.pg) {
      dbVia.hostname = '127.0.0.1'
      dbVia.port = String(via.pg.port)
    }
    const flagsOf = (b: string, d: string) => ['--store', path.join(cwd, 'unused'), '--blob-service-addr', b, '--directory-service-addr', d, '--path-info-service-addr', d]
    return {
      flags: flagsOf(bucketVia.href, dbVia.href),
      direct: flagsOf(bucket, db.url),
      opts: { url: path.join(cwd, 'unused'), blobServiceAddr: bucketVia.href, directoryServiceAddr: dbVia.href, pathInfoServiceAddr: dbVia.href },
      directOpts: { url: path.join(cwd, 'unused'), blobServiceAddr: bucket, directoryServiceAddr: db.url, pathInfoServiceAddr: db.url },
    }
  }

  async function daemon(flags: string[]) {
    const d = await startDaemon(path.join(cwd, 'unused'), `127.0.0.1:${await freePort()}`, flags.slice(2))
    closing.push(() => d.stop())
    return d
  }

  /**
   * The interop trees run on the local store and through a local daemon
   * (nix-interop, daemon tests); here, what S3 + PostgreSQL store
   * differently: a file over a chunk (a chunk list in S3) and many small
   * files (one object each), symlinks and executables (Directory rows),
   * empty files (the empty chunk) and directories, top-level files and
   * symlinks (a PathInfo with no Directory), and a deep tree (the closure
   * by one recursive query). Odd names are opaque bytes in a Directory,
   * stored alike everywhere; the 20 MiB file and 2,000 files of the local
   * runs cost minutes through radosgw and show nothing more here.
   */
  test('the Nix interop trees through a daemon: import gives nix-store --add\'s paths, export-nar nix-store --dump\'s bytes; verify is clean', async () => {
    const { flags } = await services()
    const d = await daemon(flags)
    const root = path.join(cwd, 'interop')
    const kinds = ['mixed', 'empty-dir', 'single-file', 'executable', 'empty-file', 'top-symlink', 'deep'] as const
    const trees = kinds.map((k) => makeTree(root, k))
    const large = path.join(root, 'large-file')
    fs.mkdirSync(large)
    fs.writeFileSync(path.join(large, 'big.bin'), randomBytes(3 << 20, 21))
    const many = path.join(root, 'many-files')
    fs.mkdirSync(many)
    for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(many, `f${i}`), randomBytes(i % 200, 2000 + i), { mode: i % 10 === 0 ? 0o755 : 0o644 })
    trees.push(large, many)
    const imported = await runCli(['import', ...trees, '--store', d.url], { cwd })
    assert.equal(imported.code, 0, imported.stderr)
    const paths = imported.stdout.toString().trim().split('\n')
    assert.deepEqual(paths, trees.map((t) => nix.pathOf(t)))
    // Through the daemon, as the CLI would read them.
    await withStore({ url: d.url }, async (s) => {
      for (const [i, p] of paths.entries()) assert.ok((await exportNarOf(s, p)).equals(NixStore.dump(trees[i]!)), `${path.basename(trees[i]!)}: NAR differs from nix-store --dump`)
    })
    const verified = await runCli(['verify', '--nar-hash', ...flags], { cwd })
    assert.equal(verified.code, 0, `${verified.stdout}${verified.stderr}`)
    assert.match(verified.stderr, new RegExp(`checked ${trees.length} paths, .*: no problems\\n$`))
  })

  /** The import's input: a 2 MiB file (a chunk list in S3) and a small tree beside it. */
  let inputs = 0
  const input = () => {
    const t = path.join(cwd, `input-${inputs}`, 'cut')
    fs.mkdirSync(path.join(t, 'sub'), { recursive: true })
    fs.writeFileSync(path.join(t, 'big.bin'), randomBytes(2 << 20, 300 + inputs))
    fs.writeFileSync(path.join(t, 'sub', 'small'), `input ${inputs++}\n`)
    return t
  }

  /**
   * Starts an import of a fresh input (through a daemon when `viaDaemon`),
   * cuts `proxy` when the store sends `needle` to its server, and checks:
   * one error line matching `error`, nothing registered (verify of the
   * store, read directly, is clean and lists no path), and once the proxy
   * is back, the same import gives nix-store --add's path and
   * nix-store --dump's bytes.
   */
  async function cutMidImport(server: 'pg' | 's3', needle: string, viaDaemon: boolean, error: RegExp) {
    const proxy = await CutProxy.start(server === 'pg' ? pgTarget() : s3Target())
    closing.push(() => proxy.close())
    const { flags, direct, opts, directOpts } = await services({ [server]: proxy })
    const served = viaDaemon ? (await daemon(flags)).url : undefined
    const store = served ? ['--store', served] : flags
    const tree = input()
    proxy.cutOn(needle)
    const failed = await runCli(['import', tree, ...store], { cwd })
    assert.ok(proxy.triggered, `the store sent ${JSON.stringify(needle)}`)
    assert.equal(failed.code, 1, failed.stderr)
    assertOneErrorLine(failed.stderr, error)
    const listed = await withStore(directOpts, async (s) => {
      const infos = []
      for await (const info of s.pathInfos.list()) infos.push(info)
      return infos
    })
    assert.deepEqual(listed, [], 'no path was registered')
    const verified = await runCli(['verify', ...direct], { cwd })
    assert.equal(verified.code, 0, `${verified.stdout}${verified.stderr}`)
    await proxy.restore()
    const again = await runCli(['import', tree, ...store], { cwd })
    assert.equal(again.code, 0, again.stderr)
    const p = again.stdout.toString().trim()
    assert.equal(p, nix.pathOf(tree))
    const exported = await withStore(served ? { url: served } : opts, (s) => exportNarOf(s, p))
    assert.ok(exported.equals(NixStore.dump(tree)), 'export-nar gives nix-store --dump\'s bytes')
    const clean = await runCli(['verify', '--nar-hash', ...direct], { cwd })
    assert.equal(clean.code, 0, `${clean.stdout}${clean.stderr}`)
  }

  const pgTarget = () => {
    const u = new URL(pgInfo!.url)
    return { host: u.hostname, port: Number(u.port) }
  }
  const s3Target = () => {
    const u = new URL(s3!.endpoint)
    return { host: u.hostname, port: Number(u.port) }
  }

  // The Directories' insert: blobs are in S3, nothing is in the database yet.
  test('PostgreSQL stopped as the CLI writes the Directories: one error line, nothing registered, the import works once it is back', () =>
    cutMidImport('pg', 'insert into tvix_directories', false, /PostgreSQL 127\.0\.0\.1:\d+\/\w+: /))

  // The PathInfo's insert: blobs and Directories are stored, the path is not.
  test('PostgreSQL stopped as a daemon registers the PathInfo: one error line, nothing registered, the import works once it is back', () =>
    cutMidImport('pg', 'insert into tvix_path_infos', true, /PostgreSQL 127\.0\.0\.1:\d+\/\w+: /))

  // A chunk upload: some of the blob's chunks are in S3, nothing else is anywhere.
  test('S3 unreachable as the CLI uploads chunks: one error line, nothing registered, the import works once it is back', () =>
    cutMidImport('s3', 'PUT /', false, /S3 PUT \S+: cannot reach http:\/\/127\.0\.0\.1:\d+/))

  test('S3 unreachable as a daemon uploads chunks: one error line, nothing registered, the import works once it is back', () =>
    cutMidImport('s3', 'PUT /', true, /S3 PUT \S+: cannot reach http:\/\/127\.0\.0\.1:\d+/))
})

