import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type CliResult, runCli } from '../helpers/cli.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { makeTree, randomBytes } from '../helpers/trees.js'
import { lsOutput } from '../helpers/ops.js'
import { Readable } from 'node:stream'
import { openStore } from '../../src/backends/open-store.js'
import { readAll } from '../../src/castore/blob-service.js'
import { catFile } from '../../src/ops/cat.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importNar } from '../../src/ops/import-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import { narInfo } from '../../src/ops/narinfo.js'
import { narInfoFields, renderNarInfo } from '../../src/store/narinfo.js'
import { narInfoJson } from '../../src/store/path-info-json.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-daemon-'))
const ok = async (args: string[], input?: Buffer) => {
  const r = await runCli(args, { input })
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

describe('every command gives the same output against a daemon as against a local store', () => {
  const local = path.join(root, 'local')
  /**
   * The local store is the yardstick both transports are compared with:
   * each command runs against it once (the first test), and the second
   * test reuses its output rather than starting the same process again.
   */
  const localRuns = new Map<string, Promise<CliResult>>()
  const onLocal = (args: string[]): Promise<CliResult> => {
    const key = JSON.stringify(args)
    if (!localRuns.has(key)) localRuns.set(key, runCli(args))
    return localRuns.get(key)!
  }
  const okLocal = async (args: string[]) => {
    const r = await onLocal(args)
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
    return r.stdout
  }
  let tcp: RunningDaemon
  let unix: RunningDaemon
  const trees: string[] = []

  before(async () => {
    trees.push(makeTree(root, 'mixed'), makeTree(root, 'odd-names'), makeTree(root, 'single-file'), makeTree(root, 'top-symlink'))
    const big = path.join(root, 'big')
    fs.mkdirSync(big)
    fs.writeFileSync(path.join(big, 'blob.bin'), randomBytes(5 << 20, 5))
    trees.push(big)
    tcp = await startDaemon(path.join(root, 'tcp-store'), `127.0.0.1:${await freePort()}`)
    unix = await startDaemon(path.join(root, 'unix-store'), `unix:${path.join(root, 'd.sock')}`)
  })
  after(async () => {
    assert.equal(await tcp.stop(), 0)
    assert.equal(await unix.stop(), 0)
    assert.ok(!fs.existsSync(path.join(root, 'd.sock')), 'socket file removed on shutdown')
    assert.match(unix.log(), /stopped/)
  })

  /**
   * What a command prints against `remote`: through the CLI, or in-process
   * (the same op and rendering over the same gRPC client, no process start).
   */
  const viaCli = async (args: string[], input?: Buffer) => ok(args, input)
  const viaOps = (remote: string) => async (args: string[], input?: Buffer): Promise<Buffer> => {
    const store = await openStore({ url: remote })
    try {
      const [cmd, ...rest] = args.filter((a, i) => a !== '--store' && args[i - 1] !== '--store')
      const target = rest.at(-1)!
      if (cmd === 'import' && rest[0] === '--nar') return Buffer.from((await importNar(store, Readable.from([input!]), rest[3]!)).storePath + '\n')
      if (cmd === 'import') return Buffer.from((await importPath(store, target)).storePath + '\n')
      if (cmd === 'export-nar') return await readAll(await exportNar(store, target))
      if (cmd === 'cat') return await readAll(await catFile(store, target))
      if (cmd === 'ls') return await lsOutput(store, rest.slice(0, -1), target)
      const info = await narInfo(store, target)
      return Buffer.from(rest.includes('--json') ? JSON.stringify(narInfoJson(info, store.storeDir)) + '\n' : renderNarInfo(narInfoFields(info, store.storeDir)))
    } finally {
      await store.close()
    }
  }

  // grpc+http: every tree through the CLI. grpc+unix: the mixed tree through the CLI (the wiring of each command
  // with a unix URL), the other trees in-process over the same unix-socket client.
  for (const which of ['tcp', 'unix'] as const) {
    test(`grpc+${which === 'tcp' ? 'http' : 'unix'}: import, import --nar, export-nar, narinfo, ls, cat`, async () => {
      const remote = which === 'tcp' ? tcp.url : unix.url
      for (const [i, t] of trees.entries()) {
        const run = which === 'tcp' || i === 0 ? viaCli : viaOps(remote)
        const want = (await okLocal(['import', '--store', local, t])).toString()
        assert.equal((await run(['import', '--store', remote, t])).toString(), want)
        const p = want.trim()
        const nar = await okLocal(['export-nar', '--store', local, p])
        assert.ok((await run(['export-nar', '--store', remote, p])).equals(nar), `export-nar ${p}`)
        assert.equal((await run(['import', '--store', remote, '--nar', '-', '--name', path.basename(t)], nar)).toString(), want)
        for (const args of [['narinfo'], ['narinfo', '--json'], ['ls', '-lR'], ['ls', '--json', '-R'], ['ls']]) {
          assert.equal((await run([...args, '--store', remote, p])).toString(), (await okLocal([...args, '--store', local, p])).toString(), args.join(' '))
        }
      }
      const mixed = (await okLocal(['import', '--store', local, trees[0]!])).toString().trim()
      assert.equal((await ok(['cat', '--store', remote, `${mixed}/sub/a.txt`])).toString(), 'abc')
      const big = (await okLocal(['import', '--store', local, trees[4]!])).toString().trim()
      const cat = which === 'tcp' ? viaCli : viaOps(remote)
      assert.ok((await cat(['cat', '--store', remote, `${big}/blob.bin`])).equals(fs.readFileSync(path.join(trees[4]!, 'blob.bin'))))
      // Errors are the same single lines.
      for (const args of [['cat', `${mixed}/sub`], ['ls', `${mixed}/nope`], ['narinfo', mixed.replace(/-mixed$/, '-other')]]) {
        const [r, l] = await Promise.all([runCli([args[0]!, '--store', remote, args[1]!]), onLocal([args[0]!, '--store', local, args[1]!])])
        assert.equal(r.code, l.code)
        assert.equal(r.stderr, l.stderr)
        assert.equal(r.stdout.length, 0)
      }
    })
  }

  test('per-service overrides: blobs, directories and path infos from the daemon', async () => {
    const p = (await ok(['import', '--store', tcp.url, trees[0]!])).toString().trim()
    const r = await runCli(['ls', '-lR', '--store', path.join(root, 'empty-local'), '--blob-service-addr', tcp.url, '--directory-service-addr', tcp.url, '--path-info-service-addr', tcp.url, p])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString(), (await okLocal(['ls', '-lR', '--store', local, p])).toString())
    const env = await runCli(['ls', '--store', path.join(root, 'empty-local'), p], {
      env: { BLOB_SERVICE_ADDR: tcp.url, DIRECTORY_SERVICE_ADDR: tcp.url, PATH_INFO_SERVICE_ADDR: tcp.url },
    })
    assert.equal(env.code, 0, env.stderr)
  })
})

describe('a daemon that is down', () => {
  test('is one clear error line, quickly', async () => {
    const port = await freePort()
    // "Quickly" next to a command that connects to nothing: CLI start-up alone takes seconds on a loaded machine.
    let t0 = Date.now()
    await runCli(['ls', '--store', 'memory://', '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'])
    const startup = Date.now() - t0
    t0 = Date.now()
    const r = await runCli(['ls', '--store', `grpc+http://127.0.0.1:${port}`, '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'])
    assert.equal(r.code, 1)
    assert.equal(r.stdout.length, 0)
    assert.match(r.stderr, /^error: cannot reach the tvix-store daemon at grpc\+http:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED [^\n]*\n$/)
    assert.ok(Date.now() - t0 < 2 * startup + 10_000, `${Date.now() - t0} ms, against ${startup} ms for a command that connects to nothing`)
    const u = await runCli(['import', '--store', `grpc+unix://${path.join(root, 'nobody.sock')}`, path.join(root, 'mixed')])
    assert.match(u.stderr, /^error: cannot reach the tvix-store daemon at grpc\+unix:\/\/[^\n]*ENOENT[^\n]*\n$/)
  })

  test('refuses to take over a socket a live daemon is using', async () => {
    const sock = path.join(root, 'shared.sock')
    const d = await startDaemon(path.join(root, 's1'), `unix:${sock}`)
    try {
      const r = await runCli(['daemon', '--store', path.join(root, 's2'), '--listen', `unix:${sock}`])
      assert.notEqual(r.code, 0)
      assert.match(r.stderr, /in use/)
    } finally {
      await d.stop()
    }
  })
})

describe('copy', () => {
  let daemon: RunningDaemon
  before(async () => {
    daemon = await startDaemon(path.join(root, 'copy-daemon'), `127.0.0.1:${await freePort()}`)
  })
  after(async () => {
    await daemon.stop()
  })

  test('local -> daemon -> second local: same NARs; a second copy skips; a changed tree moves only what changed', async () => {
    const a = path.join(root, 'copy-a')
    const b = path.join(root, 'copy-b')
    const tree = path.join(root, 'copy-tree')
    for (const sub of ['a', 'b', 'c']) fs.mkdirSync(path.join(tree, sub), { recursive: true })
    // 50 small files spread over a/, b/, c/ and the top.
    const where = (i: number) => path.join(tree, ['', 'a', 'b', 'c'][i % 4]!, `f${i}`)
    for (let i = 0; i < 50; i++) fs.writeFileSync(where(i), randomBytes(1000 + i, 100 + i))
    fs.writeFileSync(path.join(tree, 'large'), randomBytes(3 << 20, 77))
    const p1 = (await ok(['import', '--store', a, tree])).toString().trim()
    const first = JSON.parse((await ok(['copy', '--json', '--from', a, '--to', daemon.url, p1])).toString())
    assert.deepEqual(first.copied, [p1])
    assert.equal(first.blobs.copied, 51)
    const toB = JSON.parse((await ok(['copy', '--json', '--from', daemon.url, '--to', b, p1])).toString())
    assert.deepEqual(toB.copied, [p1])
    assert.ok((await ok(['export-nar', '--store', b, p1])).equals(await ok(['export-nar', '--store', a, p1])))
    const again = JSON.parse((await ok(['copy', '--json', '--from', a, '--to', daemon.url, p1])).toString())
    assert.deepEqual(again.copied, [])
    assert.deepEqual(again.skipped, [p1])
    assert.equal(again.bytes, 0)
    // Change one small file in c/: only its blob, c/ and the root Directory move.
    fs.writeFileSync(where(7), 'changed')
    const p2 = (await ok(['import', '--store', a, tree])).toString().trim()
    const changed = JSON.parse((await ok(['copy', '--json', '--from', a, '--to', daemon.url, p2])).toString())
    assert.deepEqual(changed.copied, [p2])
    assert.equal(changed.blobs.copied, 1)
    assert.equal(changed.blobs.skipped, 50)
    assert.equal(changed.bytes, 'changed'.length)
    assert.deepEqual(changed.directories, { copied: 2, skipped: 2 })
    const back = JSON.parse((await ok(['copy', '--json', '--from', daemon.url, '--to', b, p2])).toString())
    assert.deepEqual(back.directories, { copied: 2, skipped: 2 })
    assert.ok((await ok(['export-nar', '--store', b, p2])).equals(await ok(['export-nar', '--store', a, p2])))
  })

  test('from a daemon, a changed large file moves only the chunks the target lacks', async () => {
    const b = path.join(root, 'chunk-b')
    const tree = path.join(root, 'chunk-tree')
    fs.mkdirSync(tree)
    const big = randomBytes(8 << 20, 808)
    fs.writeFileSync(path.join(tree, 'big.bin'), big)
    const p1 = (await ok(['import', '--store', daemon.url, tree])).toString().trim()
    const first = JSON.parse((await ok(['copy', '--json', '--from', daemon.url, '--to', b, p1])).toString())
    assert.equal(first.bytes, big.length)
    big.write('a small edit somewhere in the middle', 3 << 20)
    fs.writeFileSync(path.join(tree, 'big.bin'), big)
    const p2 = (await ok(['import', '--store', daemon.url, tree])).toString().trim()
    const second = JSON.parse((await ok(['copy', '--json', '--from', daemon.url, '--to', b, p2])).toString())
    assert.deepEqual(second.copied, [p2])
    assert.ok(second.bytes > 0 && second.bytes < 512 * 1024, `fetched ${second.bytes} bytes of ${big.length}`)
    assert.ok((await ok(['export-nar', '--store', b, p2])).equals(await ok(['export-nar', '--store', daemon.url, p2])))
  })

  test('a path missing from the source is one error line and copies nothing', async () => {
    const r = await runCli(['copy', '--from', path.join(root, 'copy-a'), '--to', path.join(root, 'copy-c'), '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^error: path '\/nix\/store\/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw' is not valid in the source store\n$/)
    assert.ok(!fs.existsSync(path.join(root, 'copy-c', 'pathinfo')) || fs.readdirSync(path.join(root, 'copy-c', 'pathinfo')).length === 0)
  })
})
