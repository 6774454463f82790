/**
 * gc and GC roots on one store in S3 + PostgreSQL, against real servers
 * (test/helpers/suite-servers.ts) and real Nix: what --prune keeps exports
 * nix-store --dump's bytes and what it deletes is gone from the bucket and
 * the database; a write whose data a sweep took fails and runs again; a
 * daemon killed mid-upload holds gc off only until its lease expires.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { openStore } from '../../src/backends/open-store.js'
import { S3Client } from '../../src/backends/s3/client.js'
import { s3Form } from '../../src/backends/s3/address.js'
import { SWEEP_LOCK } from '../../src/backends/postgres/sessions.js'
import { encodeChunk } from '../../src/backends/s3/chunk-codec.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { type Directory, directoryDigest } from '../../src/castore/directory.js'
import { hasGarbageCollecting, hasTempRoots, hasWriteSessions } from '../../src/store/capabilities.js'
import { forEachLimit } from '../../src/util/pool.js'
import { BIN, REPO, cliEnv, runCli, spawnCli } from '../helpers/cli.js'
import { freePort, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { exportNarOf, withStore } from '../helpers/ops.js'
import { killGroup, spawnOwned } from '../helpers/spawn.js'
import { backendsForTests, freshBucket, freshDatabase } from '../helpers/suite-servers.js'
import { makeTree, randomBytes as randomBytesSeeded } from '../helpers/trees.js'

const servers = await backendsForTests()
const skip = typeof servers === 'string' ? servers : nixMissing()

describe('gc on a store in S3 + PostgreSQL', { skip }, () => {
  const { s3, pg: pgInfo } = typeof servers === 'string' ? { s3: undefined, pg: undefined } : servers
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-shared-gc-'))
  const nix = new NixStore(path.join(cwd, 'nix'))
  const drops: Array<() => Promise<void>> = []
  after(async () => {
    for (const d of drops) await d()
    fs.rmSync(cwd, { recursive: true, force: true })
  })

  /** A fresh bucket and database: the URLs, and counters of what they hold. */
  const fresh = async () => {
    const db = await freshDatabase(pgInfo!)
    drops.push(db.drop)
    const bucket = await freshBucket(s3!)
    const s3c = new S3Client(s3Form({ url: bucket, scheme: 's3', u: new URL(bucket) }), s3!)
    const client = new pg.Client({ connectionString: db.url })
    await client.connect()
    drops.unshift(async () => {
      await client.end()
      await s3c.close()
    })
    const count = async (table: string) => Number((await client.query(`select count(*) as n from ${table}`)).rows[0].n)
    return {
      db: db.url,
      bucket,
      client,
      s3c,
      count,
      flags: ['--store', db.url, '--blob-service-addr', bucket],
      counts: async () => ({
        objects: (await s3c.listKeys('')).length,
        directories: await count('tvix_directories'),
        paths: await count('tvix_path_infos'),
      }),
    }
  }

  /** `n` orphan chunk objects of 64 bytes, written straight into the bucket: their digests, in the order gc's rounds take them (by key). */
  const orphans = async (s3c: S3Client, n: number, seed: number) => {
    const chunks = Array.from({ length: n }, (_, i) => randomBytesSeeded(64, seed * 100_000 + i))
    const digests = chunks.map((c) => b3(c))
    await forEachLimit(chunks.keys(), 32, async (i) => {
      assert.ok(await s3c.putIfAbsent(`chunks/${toHex(digests[i]!)}`, await encodeChunk(chunks[i]!), { size: '64' }))
    })
    return digests.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
  }

  /** What gc listed as doomed and has not deleted yet. */
  const doomed = async (client: pg.Client) => Number((await client.query('select count(*) as n from tvix_gc_doomed')).rows[0].n)

  /** verify of the whole store is clean. */
  const assertClean = async (flags: string[]) => {
    const v = await runCli(['verify', ...flags], { cwd })
    assert.equal(v.code, 0, `${v.stdout}${v.stderr}`)
  }

  test('gc --prune keeps the rooted paths byte-identical to nix-store --dump and deletes the rest, rows and S3 objects', async () => {
    const trees = path.join(cwd, 'prune')
    // A 3 MiB file (a chunk list of ~50 chunks) shows what the 20 MiB of the local tests would, at a fraction of the uploads.
    const bigTree = (name: string) => {
      const t = path.join(trees, name)
      fs.mkdirSync(t, { recursive: true })
      fs.writeFileSync(path.join(t, 'big.bin'), randomBytesSeeded(3 << 20, 20))
      fs.writeFileSync(path.join(t, 'small.txt'), 'small\n')
      return t
    }
    const rooted = [makeTree(trees, 'mixed', 'rooted-mixed'), bigTree('rooted-big')]
    const loose = makeTree(trees, 'odd-names', 'loose')
    // Shares the big file (all its chunks) with a rooted path: only its own Directory and file may go.
    const sharing = bigTree('sharing')
    fs.writeFileSync(path.join(sharing, 'extra.txt'), 'only here\n')

    const store = await fresh()
    const paths: string[] = []
    for (const [i, t] of rooted.entries()) {
      const r = await runCli(['import', t, '--root', `r${i}`, ...store.flags], { cwd })
      assert.equal(r.code, 0, r.stderr)
      paths.push(r.stdout.toString().trim())
    }
    for (const t of [loose, sharing]) assert.equal((await runCli(['import', t, ...store.flags], { cwd })).code, 0)
    // What the rooted paths need, as a store holding only them has it.
    const only = await fresh()
    for (const t of rooted) assert.equal((await runCli(['import', t, ...only.flags], { cwd })).code, 0)
    const want = await only.counts()
    const before = await store.counts()
    assert.ok(before.objects > want.objects && before.directories > want.directories)

    const listed = await runCli(['roots', 'list', '--json', ...store.flags], { cwd })
    assert.equal(listed.code, 0, listed.stderr)
    assert.deepEqual(JSON.parse(listed.stdout.toString()).map((r: { path: string }) => r.path), paths)

    const dry = await runCli(['gc', '--prune', '--dry-run', '--grace', '0s', '--json', ...store.flags], { cwd })
    assert.equal(dry.code, 0, dry.stderr)
    assert.deepEqual(await store.counts(), before, 'a dry run deletes nothing')
    const gc = await runCli(['gc', '--prune', '--grace', '0s', '--json', ...store.flags], { cwd })
    assert.equal(gc.code, 0, gc.stderr)
    const report = JSON.parse(gc.stdout.toString())
    assert.deepEqual(JSON.parse(dry.stdout.toString()).paths, report.paths)
    assert.deepEqual([...report.paths].sort(), [nix.pathOf(loose), nix.pathOf(sharing)].sort())
    assert.deepEqual(await store.counts(), want)
    assert.equal(report.blobs + report.packs, before.objects - want.objects, 'S3 objects deleted as reported')
    assert.equal(report.directories, before.directories - want.directories)
    for (const [i, t] of rooted.entries()) {
      const nar = await runCli(['export-nar', paths[i]!, ...store.flags], { cwd })
      assert.equal(nar.code, 0, nar.stderr)
      assert.ok(nar.stdout.equals(NixStore.dump(t)), `${paths[i]}: NAR differs from nix-store --dump`)
    }
    const again = JSON.parse((await runCli(['gc', '--prune', '--grace', '0s', '--json', ...store.flags], { cwd })).stdout.toString())
    assert.equal(again.blobs + again.packs + again.directories + again.paths.length, 0, 'nothing left to delete')
  })

  test('a commit relying on data a sweep deleted fails, registering nothing; run again, it succeeds', async () => {
    const { db, bucket } = await fresh()
    const writer = await openStore({ url: db, blobServiceAddr: bucket })
    const collector = await openStore({ url: db, blobServiceAddr: bucket })
    try {
      assert.ok(hasWriteSessions(writer) && hasGarbageCollecting(collector))
      const { digest, size } = await writer.blobs.put(Buffer.from('an old orphan'))
      const dir: Directory = { directories: [], files: [{ kind: 'file', name: Buffer.from('f'), digest, size, executable: false }], symlinks: [] }
      await assert.rejects(
        writer.writeSession(async (writer) => {
          // Found stored, so not sent again: the session relies on it...
          assert.ok(await writer.blobs.has(digest))
          // ...and another process's gc sweeps it away meanwhile.
          const r = await collector.collectGarbage({ graceMs: 0 })
          assert.equal(r.blobs, 1)
          await writer.directories.putClosure([dir])
        }),
        (e: unknown) => (e as { code?: string }).code === 'ERR_CONFLICT' && /garbage-collected while this write was under way/.test((e as Error).message),
      )
      assert.equal((await collector.collectGarbage({ graceMs: 0, dryRun: true })).directories, 0, 'the Directory was not registered')
      // The retry finds the blob absent, sends it, and commits.
      await writer.writeSession(async (writer) => {
        if (!(await writer.blobs.has(digest))) await writer.blobs.put(Buffer.from('an old orphan'))
        await writer.directories.putClosure([dir])
      })
      assert.ok(await collector.directories.get(directoryDigest(dir)))
    } finally {
      await writer.close()
      await collector.close()
    }
  })

  test('gc deletes S3 objects in rounds of 1000 and a commit from another process gets in between: what it relies on is kept (a commit after the round that deleted it is refused and runs again); --max-wait gives up deleting nothing', async (t) => {
    const store = await fresh()
    const digests = await orphans(store.s3c, 1100, 1)
    // The last key: deleted in the second round, if at all.
    const last = digests.at(-1)!
    const lastContent = Array.from({ length: 1100 }, (_, i) => randomBytesSeeded(64, 100_000 + i)).find((c) => toHex(b3(c)) === toHex(last))!

    // A commit that stays open (a stopped writer) longer than --max-wait: gc gives up, deleting nothing.
    const stuck = new pg.Client({ connectionString: store.db })
    await stuck.connect()
    try {
      await stuck.query('begin')
      await stuck.query('select pg_advisory_xact_lock_shared($1)', [SWEEP_LOCK])
      const gaveUp = await runCli(['gc', '--grace', '0s', '--max-wait', '1s', ...store.flags], { cwd })
      assert.equal(gaveUp.code, 1, gaveUp.stderr)
      const errors = gaveUp.stderr.split('\n').filter((l) => l.startsWith('error: '))
      assert.equal(errors.length, 1, gaveUp.stderr)
      assert.match(errors[0]!, /^error: gave up after waiting \d+ s for commits to end \(stopped or hung\?\); nothing was deleted$/)
      assert.equal((await store.counts()).objects, 1100, 'nothing was deleted')
    } finally {
      await stuck.end()
    }

    const writer = await openStore({ url: store.db, blobServiceAddr: store.bucket })
    try {
      assert.ok(hasWriteSessions(writer))
      const gc = spawnCli(['gc', '--grace', '0s', '--json', ...store.flags])
      // The marking is committed (the doomed list filled): the rounds run.
      while ((await doomed(store.client)) === 0) {
        assert.equal(gc.child.exitCode, null, 'gc ended before its rounds were seen')
        await sleep(20)
      }
      const dir: Directory = { directories: [], files: [{ kind: 'file', name: Buffer.from('kept'), digest: last, size: 64, executable: false }], symlinks: [] }
      // Found stored, so not sent again: the session relies on it. Usually the commit gets in before the round that
      // would delete it; on a busy machine that round may come first: then the commit is refused (nothing registered)
      // and runs again as the CLI does, sending the blob anew.
      let sentAgain = false
      const write = () =>
        writer.writeSession(async (writer) => {
          if (!(await writer.blobs.has(last))) {
            sentAgain = true
            await writer.blobs.put(lastContent)
          }
          await writer.directories.putClosure([dir])
        })
      try {
        await write()
      } catch (e) {
        if ((e as { code?: string }).code !== 'ERR_CONFLICT') throw e
        assert.equal(await writer.directories.get(directoryDigest(dir)), undefined, 'the refused commit registered nothing')
        sentAgain = true
        await write()
      }
      t.diagnostic(sentAgain ? 'the round that deleted the blob came first: the commit was refused and ran again' : 'the commit got in between two rounds')
      const r = await gc.exited
      assert.equal(r.code, 0, r.stderr)
      // Ordering, by the data: a commit that got in before the last round kept the object from it.
      const report = JSON.parse(r.stdout.toString())
      assert.equal(report.blobs, sentAgain ? 1100 : 1099, sentAgain ? 'every orphan' : 'every orphan but the one the commit relies on')
      assert.deepEqual(await store.counts(), { objects: 1, directories: 1, paths: 0 })
      assert.ok(await writer.blobs.has(last))
      assert.equal(await doomed(store.client), 0)
      await assertClean(store.flags)
    } finally {
      await writer.close()
    }
  })

  test('verify --repair moves the epoch: a write that relied on an object repair removes fails, registering nothing; run again, it succeeds', async () => {
    const { db, bucket, s3c, flags } = await fresh()
    const writer = await openStore({ url: db, blobServiceAddr: bucket })
    try {
      assert.ok(hasWriteSessions(writer))
      const content = Buffer.from('a file the writer finds stored')
      const { digest, size } = await writer.blobs.put(content)
      // Corrupt at rest: repair will remove it.
      await s3c.delete(`chunks/${toHex(digest)}`)
      assert.ok(await s3c.putIfAbsent(`chunks/${toHex(digest)}`, await encodeChunk(Buffer.alloc(size, 'x')), { size: String(size) }))
      const dir: Directory = { directories: [], files: [{ kind: 'file', name: Buffer.from('f'), digest, size, executable: false }], symlinks: [] }
      await assert.rejects(
        writer.writeSession(async (writer) => {
          assert.ok(await writer.blobs.has(digest))
          const repaired = await runCli(['verify', '--repair', ...flags], { cwd })
          assert.equal(repaired.code, 1, repaired.stderr)
          assert.match(repaired.stdout.toString(), /^removed chunk \S+ from s3:\/\/\S+ \(corrupt\)$/m)
          await writer.directories.putClosure([dir])
        }),
        (e: unknown) => (e as { code?: string }).code === 'ERR_CONFLICT' && /garbage-collected while this write was under way/.test((e as Error).message),
      )
      assert.equal(await writer.directories.get(directoryDigest(dir)), undefined, 'the Directory was not registered')
      await writer.writeSession(async (writer) => {
        if (!(await writer.blobs.has(digest))) await writer.blobs.put(content)
        await writer.directories.putClosure([dir])
      })
      assert.ok(await writer.directories.get(directoryDigest(dir)))
      await assertClean(flags)
    } finally {
      await writer.close()
    }
  })

  test('two gc --prune at once: both finish, each object is deleted (and counted) once, the rooted path stays whole', async () => {
    const store = await fresh()
    const trees = path.join(cwd, 'two-gcs')
    const kept = makeTree(trees, 'mixed', 'kept')
    const junk = makeTree(trees, 'odd-names', 'junk')
    const r = await runCli(['import', kept, '--root', 'kept', ...store.flags], { cwd })
    assert.equal(r.code, 0, r.stderr)
    const keptPath = r.stdout.toString().trim()
    const baseline = await store.counts()
    assert.equal((await runCli(['import', junk, ...store.flags], { cwd })).code, 0)
    // Enough that the two runs' listings and sweeps overlap (the old code counted every object twice).
    await orphans(store.s3c, 400, 2)
    const before = await store.counts()
    const runs = await Promise.all([0, 1].map(() => spawnCli(['gc', '--prune', '--grace', '0s', '--json', ...store.flags]).exited))
    const reports = runs.map((x) => {
      assert.equal(x.code, 0, x.stderr)
      return JSON.parse(x.stdout.toString())
    })
    const sum = (f: (r: { blobs: number; packs: number; directories: number; paths: string[] }) => number) => reports.reduce((n, x) => n + f(x), 0)
    assert.deepEqual(await store.counts(), baseline)
    assert.equal(sum((x) => x.blobs + x.packs), before.objects - baseline.objects, 'objects deleted as reported, none twice')
    assert.equal(sum((x) => x.directories), before.directories - baseline.directories)
    assert.deepEqual(reports.flatMap((x) => x.paths), [nix.pathOf(junk)])
    const nar = await runCli(['export-nar', keptPath, ...store.flags], { cwd })
    assert.ok(nar.stdout.equals(NixStore.dump(kept)), 'the rooted path exports nix-store --dump\'s bytes')
    await assertClean(store.flags)
  })

  test('gc killed -9 in its first round and in a later one: writers go on, a clean gc then deletes the rest, the store stays whole', async () => {
    const store = await fresh()
    const trees = path.join(cwd, 'killed-gc')
    const kept = makeTree(trees, 'mixed', 'kept')
    const r = await runCli(['import', kept, '--root', 'kept', ...store.flags], { cwd })
    assert.equal(r.code, 0, r.stderr)
    const keptPath = r.stdout.toString().trim()
    const baseline = await store.counts()
    await orphans(store.s3c, 2100, 3)
    const objects = async () => (await store.counts()).objects
    // The first: as soon as its marking is committed (the first round under way, or about to be); the second: once a round is done.
    let previous: string | null = null
    for (const [moment, roundsDone] of [['its first round', 0], ['a later round', 1]] as const) {
      const gc = spawnCli(['gc', '--grace', '0s', '--json', ...store.flags])
      let marked: { sweep: string | null; n: number } | undefined
      for (;;) {
        assert.equal(gc.child.exitCode, null, `gc ended before ${moment}`)
        const now = (await store.client.query<{ sweep: string | null; n: string }>('select max(sweep)::text as sweep, count(*) as n from tvix_gc_doomed')).rows[0]!
        // Its own doomed list (the last run's, left by the kill, has another sweep number).
        if (!marked && now.sweep !== previous && Number(now.n) > 0) marked = { sweep: now.sweep, n: Number(now.n) }
        if (marked && (roundsDone === 0 || Number(now.n) < marked.n)) break
        await sleep(20)
      }
      killGroup(gc.child)
      await gc.exited
      previous = marked.sweep
      assert.ok((await objects()) > baseline.objects, `killed in ${moment}: orphans are left`)
    }
    // Writers go on at once: a commit (a root) does not wait on the dead runs' locks, which went with their connections.
    const again = await runCli(['roots', 'add', 'kept-again', keptPath, ...store.flags], { cwd })
    assert.equal(again.code, 0, again.stderr)
    const gc = await runCli(['gc', '--grace', '0s', '--json', ...store.flags], { cwd })
    assert.equal(gc.code, 0, gc.stderr)
    assert.equal(await doomed(store.client), 0, 'the dead runs\' doomed lists were replaced')
    assert.deepEqual(await store.counts(), baseline, 'only what the rooted path needs is left')
    const nar = await runCli(['export-nar', keptPath, ...store.flags], { cwd })
    assert.ok(nar.stdout.equals(NixStore.dump(kept)), 'the rooted path exports nix-store --dump\'s bytes')
    await assertClean(store.flags)
  })

  test('a paused holder of temp roots: its lease lapses, gc proceeds without it, and on resume it takes a new lease', async () => {
    const { db, bucket, client, flags } = await fresh()
    process.env.TVIX_LEASE_TTL = '2'
    const holder = await openStore({ url: db, blobServiceAddr: bucket }).finally(() => delete process.env.TVIX_LEASE_TTL)
    try {
      assert.ok(hasTempRoots(holder))
      const roots = holder.tempRoots()
      const { digest } = await holder.blobs.put(Buffer.from('told the client it is stored'))
      assert.ok(await roots.holdIf('blob', toHex(digest), () => holder.blobs.has(digest)))
      const leases = async () => (await client.query<{ id: string }>('select id::text from tvix_leases')).rows.map((r) => r.id)
      const [first] = await leases()
      assert.ok(first)
      // Held: a gc keeps it.
      const kept = await runCli(['gc', '--grace', '0s', '--json', ...flags], { cwd })
      assert.equal(JSON.parse(kept.stdout.toString()).blobs, 0, kept.stderr)
      // Paused (no timer runs while this process is blocked) past the lease, while another process collects.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3000)
      const swept = spawnSync(process.execPath, [BIN, 'gc', '--grace', '0s', '--json', ...flags], { cwd: REPO, env: cliEnv() })
      assert.equal(swept.status, 0, swept.stderr.toString())
      assert.equal(JSON.parse(swept.stdout.toString()).blobs, 1, 'the lapsed lease held nothing')
      assert.deepEqual(await leases(), [], 'gc dropped the lapsed lease')
      // Resumed: the object is gone, so the client hears "absent"; a new root takes a new lease.
      assert.equal(await roots.holdIf('blob', toHex(digest), () => holder.blobs.has(digest)), false)
      const other = await holder.blobs.put(Buffer.from('sent after the pause'))
      assert.ok(await roots.holdIf('blob', toHex(other.digest), () => holder.blobs.has(other.digest)))
      const now = await leases()
      assert.equal(now.length, 1)
      assert.notEqual(now[0], first)
      roots.release()
    } finally {
      await holder.close()
    }
  })

  test('a daemon killed -9 mid-upload: its temp roots hold gc off until its lease expires, then gc proceeds; the store stays whole', async () => {
    // Long enough that the gc right after the kill (one CLI run, beside the other seeds' runs) meets the lease live, at
    // least once in the runs, on a loaded machine; short, as the test waits it out (once: the seeds wait side by side).
    const ttlSeconds = 20
    const trees = path.join(cwd, 'killed')
    let heldOff = 0
    // Three seeds in CI; TVIX_KILL_SEEDS=1-10 runs more (the ten). Each seed has a bucket, database and
    // daemon of its own, so they run side by side: most of a run is waiting out the lease, which they share.
    const runs = await Promise.allSettled(
      killSeeds(process.env.TVIX_KILL_SEEDS ?? '1-3').map(async (seed) => {
        const store = await fresh()
        const kept = makeTree(trees, 'mixed', `kept-${seed}`)
        const r = await runCli(['import', kept, '--root', 'kept', ...store.flags], { cwd })
        assert.equal(r.code, 0, r.stderr)
        const keptPath = r.stdout.toString().trim()
        const baseline = await store.counts()
        // The daemon takes its environment from ours: a short lease for it alone (set, spawned and unset in one tick, as seeds run at once).
        const listen = `127.0.0.1:${await freePort()}`
        process.env.TVIX_LEASE_TTL = String(ttlSeconds)
        const starting = startDaemon(store.db, listen, ['--blob-service-addr', store.bucket])
        delete process.env.TVIX_LEASE_TTL
        const daemon = await starting
        const upload = makeTree(trees, 'wide', `upload-${seed}`)
        const importer = spawnOwned(process.execPath, [BIN, 'import', upload, '--store', daemon.url], { cwd: REPO, stdio: 'ignore' })
        const importerExited = new Promise((resolve) => importer.once('exit', resolve))
        try {
          // Mid-upload: the daemon holds temp roots under a lease; then a seeded moment later, kill -9.
          while (Number((await store.client.query('select count(*) as n from tvix_temp_roots')).rows[0].n) === 0) await sleep(20)
          await sleep(seed * 50)
          daemon.proc.kill('SIGKILL')
        } finally {
          killGroup(daemon.proc)
          killGroup(importer)
          await importerExited
        }
        const held = Number((await store.client.query('select count(*) as n from tvix_temp_roots')).rows[0].n)
        assert.ok(held > 0)
        // While the lease lasts, what the dead daemon's client was told is stored stays.
        const during = await runCli(['gc', '--prune', '--grace', '0s', '--json', ...store.flags], { cwd })
        assert.equal(during.code, 0, during.stderr)
        const leaseLive = Number((await store.client.query('select count(*) as n from tvix_leases where expires_at > now()')).rows[0].n)
        const afterFirst = await store.counts()
        if (leaseLive > 0) {
          assert.ok(afterFirst.objects > baseline.objects, `seed ${seed}: temp-rooted objects were kept`)
          heldOff++
        }
        // Once it has expired (by PostgreSQL's clock), gc proceeds: the lease and its roots go, and every orphan.
        while (Number((await store.client.query('select count(*) as n from tvix_leases where expires_at > now()')).rows[0].n) > 0) await sleep(100)
        const gc = await runCli(['gc', '--prune', '--grace', '0s', '--json', ...store.flags], { cwd })
        assert.equal(gc.code, 0, gc.stderr)
        assert.equal(Number((await store.client.query('select count(*) as n from tvix_leases')).rows[0].n), 0)
        assert.equal(Number((await store.client.query('select count(*) as n from tvix_temp_roots')).rows[0].n), 0)
        assert.deepEqual(await store.counts(), baseline, `seed ${seed}: only the rooted path's data is left`)
        const nar = await runCli(['export-nar', keptPath, ...store.flags], { cwd })
        assert.ok(nar.stdout.equals(NixStore.dump(kept)), `seed ${seed}: the rooted path still exports nix-store --dump's bytes`)
      }),
    )
    for (const r of runs) if (r.status === 'rejected') throw r.reason
    // A gc slower than the lease (a loaded machine) cannot show the hold; at least one run must.
    assert.ok(heldOff > 0, 'no run saw the lease hold gc off')
  })

  test('the race: two daemons, 4 importers split between them, gc --prune looping from a third process: every rooted path exports nix-store --dump\'s bytes', async (t) => {
    const store = await fresh()
    const daemons = await Promise.all([0, 1].map(async () => startDaemon(store.db, `127.0.0.1:${await freePort()}`, ['--blob-service-addr', store.bucket])))
    const trees = path.join(cwd, 'race')
    // Trees that share content (the mixed tree, one big file) so imports and sweeps meet on the same chunks; each with a file of its own.
    const shared = randomBytes(1 << 20)
    const treeOf = (name: string) => {
      const t = makeTree(trees, 'mixed', name)
      fs.writeFileSync(path.join(t, 'shared.bin'), shared)
      fs.writeFileSync(path.join(t, 'own.txt'), `only in ${name}\n`)
      return t
    }
    const rooted = new Map<string, { tree: string; path: string }>()
    const ROUNDS = 1
    // Two per daemon: each daemon holds concurrent write sessions while the other daemon and the sweeps run. The 8
    // of before repeated those same paths four times over, and on 2 cores their CLI runs mostly queued for CPU.
    const IMPORTERS = 4
    let stop = false
    let retries = 0
    let sweeps = 0
    let deleted = 0
    let gcFailed: unknown
    const gcLoop = (async () => {
      while (!stop) {
        // A path is unrooted between its import and `roots add` (two CLI runs): with no grace at all, sweeps back to
        // back take it first again and again (a livelock of the test, not a fault). 3 s spares that window; the
        // shared chunks (old) and the junk paths (older than 3 s by the next attempt) still race every import.
        const r = await runCli(['gc', '--prune', '--grace', '3s', '--json', ...store.flags], { cwd })
        assert.equal(r.code, 0, r.stderr)
        const rep = JSON.parse(r.stdout.toString())
        deleted += rep.blobs + rep.packs + rep.directories + rep.paths.length
        sweeps++
      }
    })().catch((e: unknown) => {
      gcFailed = e
    })
    /** Imports through a daemon and roots the path; a sweep may take the unrooted path first: then again. */
    const importer = async (i: number) => {
      const daemon = daemons[i % 2]!
      for (let round = 0; round < ROUNDS; round++) {
        const name = `imp-${i}-${round}`
        const tree = treeOf(name)
        for (let attempt = 0; ; attempt++) {
          assert.ok(attempt < 10, `${name}: still not rooted after 10 attempts`)
          // Junk beside it: unrooted, sharing its chunks, for the sweeps to take.
          const junk = await runCli(['import', treeOf(`${name}-junk-${attempt}`), '--store', daemon.url], { cwd })
          assert.equal(junk.code, 0, junk.stderr)
          const imported = await runCli(['import', tree, '--store', daemon.url], { cwd })
          if (imported.code !== 0) {
            retries++
            assert.match(imported.stderr, /garbage-collected|ABORTED|run it again/, imported.stderr)
            continue
          }
          const p = imported.stdout.toString().trim()
          const root = await runCli(['roots', 'add', name, p, ...store.flags], { cwd })
          if (root.code === 0) {
            rooted.set(name, { tree, path: p })
            break
          }
          retries++
          assert.match(root.stderr, /is not valid|garbage-collected/, root.stderr)
        }
      }
    }
    try {
      // Settled, all of them, before anything is stopped: no importer left running against a stopped daemon.
      const results = await Promise.allSettled(Array.from({ length: IMPORTERS }, (_, i) => importer(i)))
      for (const r of results) if (r.status === 'rejected') throw r.reason
    } finally {
      stop = true
      await gcLoop
      await Promise.all(daemons.map((d) => d.stop()))
    }
    if (gcFailed) throw gcFailed
    assert.equal(rooted.size, IMPORTERS * ROUNDS)
    t.diagnostic(`${sweeps} sweeps deleted ${deleted} objects and paths; ${retries} imports or roots had to run again`)
    assert.ok(sweeps > 0 && deleted > 0, `the sweeps ran (${sweeps}) and deleted something (${deleted})`)
    // In-process: what the store holds, not the export command, is in question here.
    await withStore({ url: store.db, blobServiceAddr: store.bucket }, async (reader) => {
      for (const [name, { tree, path: p }] of rooted) assert.ok((await exportNarOf(reader, p)).equals(NixStore.dump(tree)), `${name}: NAR differs from nix-store --dump`)
    })
  })
})

/** Seeds written `A-B`: A to B inclusive. */
function killSeeds(range: string): number[] {
  const m = /^(\d+)-(\d+)$/.exec(range)
  if (!m) throw new Error(`TVIX_KILL_SEEDS=${range}: want A-B, e.g. 1-10`)
  return Array.from({ length: Number(m[2]) - Number(m[1]) + 1 }, (_, i) => Number(m[1]) + i)
}
