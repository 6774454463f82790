/**
 * One store on S3 + PostgreSQL shared by several processes, against real
 * servers (test/helpers/servers.ts) and real Nix: the CLI imports and
 * exports through it as `nix-store --add` / `--dump` do, and two daemons
 * on the same bucket and database serve each other's writes at once.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { runCli } from '../helpers/cli.js'
import { freePort, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { backendsForTests, freshBucket, freshDatabase } from '../helpers/suite-servers.js'
import { makeTree, randomBytes } from '../helpers/trees.js'

const servers = await backendsForTests()
const skip = typeof servers === 'string' ? servers : nixMissing()

describe('a store on S3 + PostgreSQL', { skip }, () => {
  const { s3, pg } = typeof servers === 'string' ? { s3: undefined, pg: undefined } : servers
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-shared-'))
  const nix = new NixStore(path.join(cwd, 'nix'))
  const drops: Array<() => Promise<void>> = []
  after(async () => {
    for (const d of drops) await d()
  })
  /** --store is never opened: each service has its URL. */
  const services = async () => {
    const db = await freshDatabase(pg!)
    drops.push(db.drop)
    const bucket = await freshBucket(s3!)
    return ['--store', path.join(cwd, 'unused'), '--blob-service-addr', bucket, '--directory-service-addr', db.url, '--path-info-service-addr', db.url]
  }

  test('import gives nix-store --add\'s paths, export-nar nix-store --dump\'s bytes, path-info lists them', async () => {
    const flags = await services()
    const paths: string[] = []
    for (const kind of ['mixed', 'odd-names', 'deep'] as const) {
      const tree = makeTree(path.join(cwd, 'trees'), kind)
      const imported = await runCli(['import', tree, ...flags], { cwd })
      assert.equal(imported.code, 0, imported.stderr)
      const p = imported.stdout.toString().trim()
      assert.equal(p, nix.pathOf(tree))
      paths.push(p)
      const exported = await runCli(['export-nar', p, ...flags], { cwd })
      assert.equal(exported.code, 0, exported.stderr)
      assert.ok(exported.stdout.equals(NixStore.dump(tree)), `${kind}: NAR differs from nix-store --dump`)
    }
    const listed = await runCli(['path-info', '--all', ...flags], { cwd })
    assert.equal(listed.code, 0, listed.stderr)
    assert.deepEqual(listed.stdout.toString().trim().split('\n').sort(), paths.sort())
    assert.ok(!fs.existsSync(path.join(cwd, 'unused')), '--store was not opened')
  })

  test('two daemons on one bucket and database: what one imports the other serves at once, byte-identical', async () => {
    const flags = (await services()).slice(2)
    const [a, b] = await Promise.all([0, 1].map(async () => startDaemon(path.join(cwd, 'unused'), `127.0.0.1:${await freePort()}`, flags)))
    try {
      // Small files (one object each) and a file of many chunks (a chunk list): what one daemon writes to S3 and the other reads. 200 files show it as 2,000 would.
      const tree = path.join(cwd, 'trees', 'shared-many')
      fs.mkdirSync(tree, { recursive: true })
      for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(tree, `f${i}`), randomBytes(i, 3000 + i))
      fs.writeFileSync(path.join(tree, 'big.bin'), randomBytes(2 << 20, 3))
      const imported = await runCli(['import', tree, '--store', a!.url], { cwd })
      assert.equal(imported.code, 0, imported.stderr)
      const p = imported.stdout.toString().trim()
      const exported = await runCli(['export-nar', p, '--store', b!.url], { cwd })
      assert.equal(exported.code, 0, exported.stderr)
      assert.ok(exported.stdout.equals(NixStore.dump(tree)), 'the second daemon serves nix-store --dump\'s bytes')
    } finally {
      await Promise.all([a!.stop(), b!.stop()])
    }
  })

  test('a database that is down: one error line naming it, exit 1', async () => {
    const port = await freePort()
    const url = `postgres://postgres@127.0.0.1:${port}/nothing`
    const r = await runCli(['path-info', '--all', '--store', path.join(cwd, 'unused'), '--directory-service-addr', url, '--path-info-service-addr', url], { cwd })
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, new RegExp(`^error: PostgreSQL 127\\.0\\.0\\.1:${port}/nothing: .*\\n$`))
  })
})
