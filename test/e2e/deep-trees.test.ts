import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { after, before, describe, test } from 'node:test'
import { calculateNarResponse, getDirectoryRequest, getPathInfoRequest } from '../../src/grpc/messages.js'
import { encodeNode } from '../../src/castore/proto.js'
import { decodePathInfo } from '../../src/store/proto.js'
import { runCli, spawnCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { deepChainNar } from '../helpers/nar.js'
import { NIX_ENV, nixMissing } from '../helpers/nix.js'
import { RawGrpc } from '../helpers/raw-grpc.js'
import { rssKiB, runProcess } from '../helpers/spawn.js'
import { RSS_LIMIT_MIB } from '../helpers/attack.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { toHex } from '../../src/castore/digest.js'
import { parseStorePathArg } from '../../src/store/store-path.js'

const DEPTH = 10_000

/**
 * A tree 10,000 levels deep, which Nix's NAR format allows: every command
 * that walks a tree must handle it (explicit stacks, not recursion).
 */
describe(`a ${DEPTH}-deep directory chain`, { skip: nixMissing() }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-deep-'))
  const narFile = path.join(tmp, 'deep.nar')
  const store = path.join(tmp, 'store')
  let nar: Buffer
  let expectedPath: string
  let narSha256Hex: string
  let daemon: RunningDaemon | undefined

  const ok = async (args: string[]) => {
    const r = await runCli(args)
    assert.equal(r.code, 0, `${args.join(' ')} exited ${r.code}: ${r.stderr.slice(0, 2000)}`)
    return r
  }

  before(async () => {
    await pipeline(Readable.from(deepChainNar(DEPTH)), fs.createWriteStream(narFile))
    nar = fs.readFileSync(narFile)
    // The oracle: Nix's hash of the NAR bytes and the store path Nix gives a recursive sha256 of it
    // (nix-store --restore cannot unpack it: its paths are longer than PATH_MAX).
    const hash = await runProcess('nix-hash', ['--type', 'sha256', '--flat', '--base32', narFile], { env: NIX_ENV })
    assert.equal(hash.code, 0, hash.stderr)
    const fixed = await runProcess('nix-store', ['--print-fixed-path', '--recursive', 'sha256', hash.stdout.toString().trim(), 'deep'], { env: NIX_ENV })
    assert.equal(fixed.code, 0, fixed.stderr)
    expectedPath = fixed.stdout.toString().trim()
    const hex = await runProcess('nix-hash', ['--type', 'sha256', '--flat', narFile], { env: NIX_ENV })
    narSha256Hex = hex.stdout.toString().trim()
  })
  after(async () => {
    await daemon?.stop()
    fs.rmSync(tmp, { recursive: true, force: true })
  })

  test('import --nar gives the store path Nix computes; export-nar gives the same bytes back', async () => {
    const r = await ok(['import', '--nar', narFile, '--name', 'deep', '--store', store])
    assert.equal(r.stdout.toString().trim(), expectedPath)
    const out = await ok(['export-nar', '--store', store, expectedPath])
    assert.ok(out.stdout.equals(nar), `export-nar gave ${out.stdout.length} bytes, want the ${nar.length} imported`)
  })

  test('ls -R and ls --json -R list every level', async () => {
    const r = await ok(['ls', '-R', '--store', store, expectedPath])
    const lines = r.stdout.toString().split('\n').filter((l) => l !== '')
    // Every Directory below the root, then the file: the deepest directory's entry `d`.
    assert.equal(lines.length, DEPTH)
    assert.equal(lines.at(-1), `.${'/d'.repeat(DEPTH)}`)
    const json = (await ok(['ls', '--json', '-R', '--store', store, expectedPath])).stdout.toString()
    assert.equal(json.split('"d":').length - 1, DEPTH)
    assert.ok(json.endsWith(`"d":{"type":"regular","size":14}${'}}'.repeat(DEPTH)}`), json.slice(-200))
  })

  test('verify --nar-hash re-renders it and finds it intact', async () => {
    const r = await ok(['verify', '--nar-hash', '--store', store, expectedPath])
    assert.match(r.stderr, /no problems/)
  })

  test('through a daemon: copy there, export-nar and CalculateNAR there, copy back', async (t) => {
    daemon = await startDaemon(path.join(tmp, 'served'), '127.0.0.1:0', ['--http-listen', '127.0.0.1:0'])
    await ok(['copy', '--store', store, '--to', daemon.url, expectedPath])
    const remote = await ok(['export-nar', '--store', daemon.url, expectedPath])
    assert.ok(remote.stdout.equals(nar), 'export-nar through the daemon differs')

    const client = new RawGrpc(daemon.url)
    try {
      const digest = parseStorePathArg(expectedPath).path.digest
      const got = await client.unary('/tvix.store.v1.PathInfoService/Get', getPathInfoRequest.encode({ byOutputHash: digest }))
      assert.equal(got.code, 0, got.details)
      const node = decodePathInfo(got.response!).node
      const calc = await client.unary('/tvix.store.v1.PathInfoService/CalculateNAR', encodeNode({ ...node, name: new Uint8Array(0) }))
      assert.equal(calc.code, 0, calc.details)
      const res = calculateNarResponse.decode(calc.response!)
      assert.equal(res.narSize, nar.length)
      assert.equal(toHex(res.narSha256), narSha256Hex)

      // Issue 16: every level in one recursive Get, the NAR and its listing over HTTP, gc marking while
      // served (nothing of the path goes), all within the daemon's memory bound.
      const getAll = getDirectoryRequest.encode({ digest: (node as { digest: Uint8Array }).digest, recursive: true })
      assert.equal((await streamed(client, getAll)).length, DEPTH)
      const cache = /Nix binary cache at (http:\/\/\S+)/.exec(daemon.log())![1]!
      const hashPart = path.basename(expectedPath).slice(0, 32)
      const url = /^URL: (\S+)$/m.exec(await (await fetch(`${cache}/${hashPart}.narinfo`)).text())![1]!
      assert.ok(Buffer.from(await (await fetch(`${cache}/${url}`)).arrayBuffer()).equals(nar), 'the NAR over HTTP differs')
      assert.equal((await (await fetch(`${cache}/${hashPart}.ls`)).text()).split('"d":').length - 1, DEPTH)
      await ok(['gc', '--store', path.join(tmp, 'served'), '--grace', '0'])
      assert.equal((await streamed(client, getAll)).length, DEPTH)
      const peakKiB = rssKiB(daemon.proc.pid!, 'VmHWM')
      if (peakKiB !== undefined) {
        t.diagnostic(`daemon peak RSS ${(peakKiB / 1024).toFixed(1)} MiB`)
        assert.ok(peakKiB / 1024 <= RSS_LIMIT_MIB, `daemon peak RSS ${(peakKiB / 1024).toFixed(1)} MiB`)
      }
    } finally {
      client.close()
    }

    const back = path.join(tmp, 'back')
    await ok(['copy', '--from', daemon.url, '--to', back, expectedPath])
    assert.ok((await ok(['export-nar', '--store', back, expectedPath])).stdout.equals(nar), 'export-nar after the round trip differs')
  })

  test('verify --repair of a chain damaged half-way removes the levels above in one pass and says so', async (t) => {
    // Damage the Directory 5000 levels down (found by walking from the root).
    const local = await openLocalStore(store)
    let file: string
    try {
      const info = (await local.pathInfos.get(parseStorePathArg(expectedPath).path.digest))!
      let node = info.node
      for (let i = 0; i < DEPTH / 2; i++) {
        assert.equal(node.kind, 'directory')
        node = (await local.directories.get(node.digest))!.directories[0]!
      }
      assert.equal(node.kind, 'directory')
      file = local.root.objectPath('dirs', toHex(node.digest))
    } finally {
      await local.close()
    }
    fs.chmodSync(file, 0o644)
    fs.writeFileSync(file, Buffer.from('not a directory'))

    // A plain verify reads every object once: the yardstick for what linear costs on this machine.
    const plain = await spawnCli(['verify', '--store', store]).exited
    assert.equal(plain.code, 1, plain.stderr)
    // Repair does about twice that; a repair that rescans the store per level (5000 of them) never ends in time.
    const bound = 30 * plain.ms + 30_000
    const repair = spawnCli(['verify', '--repair', '--store', store])
    const guard = setTimeout(() => repair.child.kill('SIGKILL'), bound)
    const r = await repair.exited.finally(() => clearTimeout(guard))
    t.diagnostic(`verify: ${plain.ms.toFixed(0)} ms; verify --repair: ${r.ms.toFixed(0)} ms`)
    assert.equal(r.signal, null, `verify --repair was still running after ${bound.toFixed(0)} ms (a plain verify took ${plain.ms.toFixed(0)} ms)`)
    assert.equal(r.code, 1, r.stderr)
    const removed = r.stdout.toString().split('\n').filter((l) => l.startsWith('removed '))
    // The damaged Directory, the DEPTH/2 above it, and the path.
    assert.equal(removed.length, DEPTH / 2 + 2, removed.slice(0, 5).join('\n'))
    assert.equal(removed.filter((l) => l.includes('(corrupt)')).length, 1)
    assert.ok(removed.some((l) => l.startsWith(`removed path '${expectedPath}'`)))
    const again = await runCli(['verify', '--store', store])
    assert.equal(again.code, 0, again.stdout.toString().slice(0, 2000))
  })
})

/** The messages of a server-streaming Get, which must end OK. */
async function streamed(client: RawGrpc, request: Uint8Array): Promise<Buffer[]> {
  const r = await client.serverStream('/tvix.castore.v1.DirectoryService/Get', request)
  assert.equal(r.code, 0, r.details)
  return r.messages
}
