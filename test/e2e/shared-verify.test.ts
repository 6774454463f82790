/**
 * `verify` and `verify --repair` on a store whose blobs are in S3 and whose
 * Directories and PathInfos are in PostgreSQL, against real servers
 * (test/helpers/suite-servers.ts) and real Nix: each corruption written
 * straight into the bucket or the database is seen (exit 1, one line per
 * problem), repaired (one line per removal), then verify is clean, what
 * survives exports `nix-store --dump`'s bytes and importing the lost path
 * again restores it.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import pg from 'pg'
import { parseStoreUrl } from '../../src/backends/registry.js'
import type { S3Address } from '../../src/backends/s3/address.js'
import type { Store as OpenStore } from '../../src/store/store.js'
import { encodeChunk } from '../../src/backends/s3/chunk-codec.js'
import { S3Client } from '../../src/backends/s3/client.js'
import { S3ChunkInventory } from '../../src/backends/s3/inventory.js'
import { b3Display, toHex } from '../../src/castore/digest.js'
import { emptyDirectory } from '../../src/castore/directory.js'
import { encodeDirectory } from '../../src/castore/proto.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import { decodePathInfo } from '../../src/store/proto.js'
import { runCli } from '../helpers/cli.js'
import { exportNarOf, importInProcess, withStore } from '../helpers/ops.js'
import { freePort, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { buildNixClosure, importNixClosure } from '../helpers/nix-closure.js'
import { backendsForTests, freshBucket, freshDatabase } from '../helpers/suite-servers.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

const servers = await backendsForTests()
const skip = typeof servers === 'string' ? servers : nixMissing()

/** A store path's digest, from its hash part. */
const digestOf = (p: string) => Buffer.from(nixbase32.decode(path.basename(p).slice(0, 32)))
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

describe('verify on S3 + PostgreSQL', { skip }, () => {
  const { s3, pg: pgInfo } = typeof servers === 'string' ? { s3: undefined, pg: undefined } : servers
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-shared-verify-'))
  const nix = new NixStore(path.join(cwd, 'nix'))
  const closing: Array<() => Promise<void>> = []
  after(async () => {
    for (const c of closing.reverse()) await c()
  })

  /** The store opened in this process (a fresh open each time: nothing it knew before a repair is reused). */
  const inProcess = <T>(services: { bucket: string; db: string }, fn: (s: OpenStore) => Promise<T>): Promise<T> =>
    withStore({ url: path.join(cwd, 'unused'), blobServiceAddr: services.bucket, directoryServiceAddr: services.db, pathInfoServiceAddr: services.db }, fn)

  let stores = 0
  /**
   * A fresh bucket and database holding two paths: `victim` (a 2 MiB file,
   * stored as a chunk list, and a Directory of its own) and `survivor` (the
   * mixed tree), which no corruption below touches.
   */
  async function store() {
    const n = stores++
    const db = await freshDatabase(pgInfo!)
    closing.push(db.drop)
    const bucket = await freshBucket(s3!)
    const flags = ['--store', path.join(cwd, 'unused'), '--blob-service-addr', bucket, '--directory-service-addr', db.url, '--path-info-service-addr', db.url]
    const sql = new pg.Client({ connectionString: db.url })
    await sql.connect()
    // Before the drop (closing runs in reverse).
    closing.push(() => sql.end())
    const s3c = new S3Client(parseStoreUrl(bucket) as S3Address, s3!)
    closing.push(() => s3c.close())
    const victimTree = path.join(cwd, `victim-${n}`, 'victim')
    fs.mkdirSync(path.join(victimTree, 'only-here'), { recursive: true })
    fs.writeFileSync(path.join(victimTree, 'big.bin'), randomBytes(2 << 20, 100 + n))
    fs.writeFileSync(path.join(victimTree, 'only-here', 'note'), `victim ${n}\n`)
    const survivorTree = makeTree(path.join(cwd, `survivor-${n}`), 'mixed', 'survivor')
    const cli = (args: string[]) => runCli([...args, ...flags], { cwd })
    const services = { bucket, db: db.url }
    const [victim, survivor] = (await inProcess(services, (s) => importInProcess(s, [victimTree, survivorTree]))) as [string, string]
    assert.equal(victim, nix.pathOf(victimTree))
    assert.equal(survivor, nix.pathOf(survivorTree))
    const inventory = new S3ChunkInventory(s3c)
    /** The victim's big file: its chunk list's digest and its chunks. */
    const [list] = await s3c.listKeys('blobs/')
    const listHex = list!.slice('blobs/'.length)
    const chunks = (await inventory.readList(listHex))!.chunks.map((c) => toHex(c.digest))
    /** The victim's root Directory and its one child. */
    const row = (await sql.query<{ data: Buffer }>('select data from tvix_path_infos where digest = $1', [digestOf(victim)])).rows[0]!
    const info = decodePathInfo(row.data)
    assert.equal(info.node.kind, 'directory')
    const root = Buffer.from(info.node.digest)
    const sub = (await sql.query<{ child: Buffer }>('select child from tvix_directory_children where parent = $1', [root])).rows[0]!.child
    return { cli, services, sql, s3c, victim, victimTree, survivor, survivorTree, listHex, chunks, root, sub, info }
  }

  type Store = Awaited<ReturnType<typeof store>>

  /** Each pattern matches exactly one line of `lines`, and every line is matched. */
  function sameLines(lines: string[], want: RegExp[], what: string): void {
    assert.equal(lines.length, want.length, `${what}:\n${lines.join('\n')}`)
    for (const re of want) assert.equal(lines.filter((l) => re.test(l)).length, 1, `${what}: one line matches ${re}:\n${lines.join('\n')}`)
  }

  const outLines = (r: { stdout: Buffer }) => r.stdout.toString().split('\n').filter(Boolean)

  /**
   * verify sees exactly `problems` (exit 1, one line each), `verify --repair`
   * prints them and exactly `removed`/`added`, then verify is clean, the
   * survivor exports nix-store --dump's bytes, and (`reimport`) importing
   * the victim again restores it.
   */
  async function seenAndRepaired(st: Store, problems: RegExp[], removed: RegExp[], opts: { added?: RegExp[]; reimport?: boolean } = {}) {
    const seen = await st.cli(['verify'])
    assert.equal(seen.code, 1, seen.stderr)
    sameLines(outLines(seen), problems, 'verify')
    assert.match(seen.stderr, new RegExp(`: ${problems.length} problems?\\n$`))
    const repaired = await st.cli(['verify', '--repair'])
    assert.equal(repaired.code, 1, repaired.stderr)
    sameLines(outLines(repaired), [...problems, ...removed, ...(opts.added ?? [])], 'verify --repair')
    const clean = await st.cli(['verify', '--nar-hash'])
    assert.equal(clean.code, 0, `${clean.stdout}${clean.stderr}`)
    assert.equal(clean.stdout.toString(), '')
    await inProcess(st.services, async (s) => {
      assert.ok((await exportNarOf(s, st.survivor)).equals(NixStore.dump(st.survivorTree)), 'the survivor exports nix-store --dump\'s bytes')
      if (opts.reimport === false) return
      assert.deepEqual(await importInProcess(s, [st.victimTree]), [st.victim])
      assert.ok((await exportNarOf(s, st.victim)).equals(NixStore.dump(st.victimTree)), 'the victim, imported again, exports nix-store --dump\'s bytes')
    })
    if (opts.reimport === false) return
    const after = await st.cli(['verify'])
    assert.equal(after.code, 0, `${after.stdout}${after.stderr}`)
  }

  const d = (hex: string | Uint8Array) => esc(b3Display(typeof hex === 'string' ? Buffer.from(hex, 'hex') : hex))
  const victimLine = (st: Store) => `path '${esc(st.victim)}'`

  test('a clean store: verify, verify PATH and --nar-hash find nothing (exit 0); --json is one line', async () => {
    const st = await store()
    for (const args of [['verify'], ['verify', '--nar-hash'], ['verify', '--nar-hash', st.victim], ['verify', '--repair']]) {
      const r = await st.cli(args)
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
      assert.equal(r.stdout.toString(), '')
      assert.match(r.stderr, /no problems/)
    }
    const json = await st.cli(['verify', '--json'])
    assert.equal(json.code, 0, json.stderr)
    assert.match(json.stdout.toString(), /^\{[^\n]*\}\n$/)
    const report = JSON.parse(json.stdout.toString()) as { checked: { paths: number; directories: number; packs: number }; problems: unknown[] }
    assert.deepEqual(report.problems, [])
    assert.equal(report.checked.paths, 2)
    assert.equal(report.checked.packs, 1, 'the big file is the one chunk list')
  })

  test('a chunk object overwritten in the bucket: seen, only by the paths that use it; repair removes it, its blob and its path', async () => {
    const st = await store()
    const bad = st.chunks[1]!
    const stored = (await new S3ChunkInventory(st.s3c).readChunk(bad))!
    await st.s3c.delete(`chunks/${bad}`)
    assert.ok(await st.s3c.putIfAbsent(`chunks/${bad}`, await encodeChunk(randomBytes(stored.data.length, 7)), { size: String(stored.data.length) }))
    const survivorOnly = await st.cli(['verify', st.survivor])
    assert.equal(survivorOnly.code, 0, `${survivorOnly.stdout}${survivorOnly.stderr}`)
    const problems = [new RegExp(`^chunk ${d(bad)} is corrupt: its bytes do not match its digest$`), new RegExp(`^${victimLine(st)} cannot be served: blob ${d(st.listHex)} is corrupt$`)]
    const victimOnly = await st.cli(['verify', st.victim])
    assert.equal(victimOnly.code, 1, victimOnly.stderr)
    sameLines(outLines(victimOnly), problems, 'verify VICTIM')
    await seenAndRepaired(st, problems, [
      new RegExp(`^removed chunk ${d(bad)} from s3://\\S+ \\(corrupt\\)$`),
      new RegExp(`^removed blob ${d(st.listHex)} from s3://\\S+ \\(its chunk ${d(bad)} is corrupt\\)$`),
      new RegExp(`^removed ${victimLine(st)} \\(blob ${d(st.listHex)} is gone\\)$`),
    ])
  })

  test('a chunk list naming a missing chunk: seen; repair removes the blob and its path', async () => {
    const st = await store()
    const gone = st.chunks[2]!
    await st.s3c.delete(`chunks/${gone}`)
    await seenAndRepaired(
      st,
      [new RegExp(`^blob ${d(st.listHex)} uses chunk ${d(gone)}, which is missing from s3://\\S+$`), new RegExp(`^${victimLine(st)} cannot be served: blob ${d(st.listHex)} is corrupt$`)],
      [new RegExp(`^removed blob ${d(st.listHex)} from s3://\\S+ \\(its chunk ${d(gone)} is gone\\)$`), new RegExp(`^removed ${victimLine(st)} \\(blob ${d(st.listHex)} is gone\\)$`)],
    )
  })

  test('a Directory row whose bytes do not hash to its key: seen; repair removes it, its parent and the path', async () => {
    const st = await store()
    await st.sql.query('update tvix_directories set data = $2 where digest = $1', [st.sub, Buffer.from(encodeDirectory(emptyDirectory()))])
    await seenAndRepaired(
      st,
      [new RegExp(`^directory ${d(st.sub)} is corrupt: its bytes do not match its digest$`), new RegExp(`^${victimLine(st)} cannot be served: directory ${d(st.sub)} is corrupt$`)],
      [
        new RegExp(`^removed directory ${d(st.sub)} \\(corrupt\\)$`),
        new RegExp(`^removed directory ${d(st.root)} \\(its child directory ${d(st.sub)} is gone\\)$`),
        new RegExp(`^removed ${victimLine(st)} \\(directory ${d(st.root)} is gone\\)$`),
      ],
    )
  })

  test('a PathInfo whose root Directory is gone: seen; repair removes the PathInfo', async () => {
    const st = await store()
    await st.sql.query('delete from tvix_directories where digest = $1', [st.root])
    await seenAndRepaired(st, [new RegExp(`^${victimLine(st)} cannot be served: directory ${d(st.root)} is missing$`)], [new RegExp(`^removed ${victimLine(st)} \\(directory ${d(st.root)} is gone\\)$`)])
  })

  test('a missing child edge row and a stray one: seen; repair adds the one, drops the other, removes nothing', async () => {
    const st = await store()
    await st.sql.query('delete from tvix_directory_children where parent = $1 and child = $2', [st.root, st.sub])
    await st.sql.query('insert into tvix_directory_children (parent, child) values ($1, $2)', [st.sub, st.root])
    await seenAndRepaired(
      st,
      [
        new RegExp(`^directory ${d(st.root)} has no row in tvix_directory_children for its child directory ${d(st.sub)}$`),
        new RegExp(`^directory ${d(st.sub)} has a row in tvix_directory_children for directory ${d(st.root)}, which is not its child$`),
      ],
      [new RegExp(`^removed the row in tvix_directory_children for directory ${d(st.sub)}'s non-child ${d(st.root)}$`)],
      { added: [new RegExp(`^added the row in tvix_directory_children for directory ${d(st.root)}'s child ${d(st.sub)}$`)], reimport: false },
    )
    const edges = (await st.sql.query<{ parent: Buffer; child: Buffer }>('select parent, child from tvix_directory_children where parent = $1 or parent = $2', [st.root, st.sub])).rows
    assert.deepEqual(edges.map((e) => [toHex(e.parent), toHex(e.child)]), [[toHex(st.root), toHex(st.sub)]])
    const exported = await inProcess(st.services, (s) => exportNarOf(s, st.victim))
    assert.ok(exported.equals(NixStore.dump(st.victimTree)), 'the victim still exports nix-store --dump\'s bytes')
  })

  const built = buildNixClosure(cwd)

  test('a missing references row (a closure copied in through a daemon): seen; repair adds it back, and query --referrers finds the referrer again', { skip: built.skip }, async () => {
    const { closure } = built
    const db = await freshDatabase(pgInfo!)
    closing.push(db.drop)
    const bucket = await freshBucket(s3!)
    const services = ['--blob-service-addr', bucket, '--directory-service-addr', db.url, '--path-info-service-addr', db.url]
    const flags = ['--store', path.join(cwd, 'unused'), ...services]
    const daemon = await startDaemon(path.join(cwd, 'unused'), `127.0.0.1:${await freePort()}`, services)
    try {
      await importNixClosure(closure!, daemon.url)
    } finally {
      await daemon.stop()
    }
    const cli = (args: string[]) => runCli([...args, ...flags], { cwd })
    const [top, left] = [closure!.byName['fx-top']!, closure!.byName['fx-left']!]
    const sql = new pg.Client({ connectionString: db.url })
    await sql.connect()
    try {
      const gone = await sql.query('delete from tvix_path_references where referrer = $1 and reference = $2', [digestOf(top), digestOf(left)])
      assert.equal(gone.rowCount, 1)
    } finally {
      await sql.end()
    }
    const referrers = async () => (await cli(['query', '--referrers', left])).stdout.toString().trim().split('\n').filter(Boolean)
    assert.deepEqual(await referrers(), [], 'without the row, fx-left has no referrer')
    const problem = new RegExp(`^path '${esc(top)}' is missing from the referrers index of '${esc(left)}'$`)
    const seen = await cli(['verify'])
    assert.equal(seen.code, 1, seen.stderr)
    sameLines(outLines(seen), [problem], 'verify')
    const repaired = await cli(['verify', '--repair'])
    assert.equal(repaired.code, 1, repaired.stderr)
    sameLines(outLines(repaired), [problem, new RegExp(`^added path '${esc(top)}' to the referrers index of '${esc(left)}'$`)], 'verify --repair')
    const clean = await cli(['verify', '--nar-hash'])
    assert.equal(clean.code, 0, `${clean.stdout}${clean.stderr}`)
    assert.deepEqual(await referrers(), [top])
    await inProcess({ bucket, db: db.url }, async (s) => {
      for (const p of Object.values(closure!.byName)) assert.ok((await exportNarOf(s, p)).equals(NixStore.dump(p)), `${p}: NAR differs from nix-store --dump`)
    })
  })
})
