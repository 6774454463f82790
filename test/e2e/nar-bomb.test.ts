import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { after, describe, test } from 'node:test'
import { status } from '@grpc/grpc-js'
import { type Directory, directoryDigest, directorySize, emptyDirectory } from '../../src/castore/directory.js'
import { blobChunk, digestMessage, statBlobRequest } from '../../src/grpc/messages.js'
import { encodeDirectory, encodeNode } from '../../src/castore/proto.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { RawGrpc } from '../helpers/raw-grpc.js'
import { spawnCli } from '../helpers/cli.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { narSize } from '../../src/store/nar/size.js'
import * as nixbase32 from '../../src/store/nixbase32.js'

const LEVELS = 41
const EMPTY = new Uint8Array(0)
const CALC = '/tvix.store.v1.PathInfoService/CalculateNAR'

/** Resident set size of a process in MiB, from /proc. */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : NaN
}

/** CPU time (user + system) a process has used, in seconds. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** The bomb's Directories, leaves first, over a one-byte file with digest `blob`. */
function bombDirectories(blob: Uint8Array): Directory[] {
  let dir: Directory = { ...emptyDirectory(), files: [{ kind: 'file', name: Buffer.from('f'), digest: blob, size: 1, executable: false }] }
  const dirs = [dir]
  for (let i = 1; i < LEVELS; i++) {
    const child = { kind: 'directory' as const, digest: directoryDigest(dir), size: directorySize(dir) }
    dir = { ...emptyDirectory(), directories: [{ ...child, name: Buffer.from('a') }, { ...child, name: Buffer.from('b') }] }
    dirs.push(dir)
  }
  return dirs
}

/**
 * A "NAR bomb": LEVELS small Directories, each with two entries naming
 * the same child, with consistent sizes. The tree they describe has 2^40
 * files and a NAR of about 150 TB, yet the Directories are a few KiB. A
 * daemon must refuse to render it (cheaply), keep serving others
 * meanwhile, stop work for calls that were cancelled, and stop promptly
 * on SIGTERM.
 */
describe('a NAR bomb sent to a daemon', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bomb-'))
  const daemons: RunningDaemon[] = []
  after(async () => {
    // SIGKILL: a daemon still running here failed to stop on SIGTERM in its test.
    for (const d of daemons) if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL')
    fs.rmSync(tmp, { recursive: true, force: true })
  })

  /** Uploads a one-byte blob and the bomb's Directories (leaves first); the root node. */
  async function plantBomb(client: RawGrpc): Promise<{ root: Uint8Array; blob: Uint8Array }> {
    const put = await client.clientStream('/tvix.castore.v1.BlobService/Put', [blobChunk.encode(Buffer.from('x'))])
    assert.equal(put.code, status.OK, put.details)
    const blob = digestMessage.decode(put.response!)
    const dirs = bombDirectories(blob)
    const r = await client.clientStream('/tvix.castore.v1.DirectoryService/Put', dirs.map(encodeDirectory))
    assert.equal(r.code, status.OK, r.details)
    const top = dirs.at(-1)!
    const root = encodeNode({ kind: 'directory', name: EMPTY, digest: directoryDigest(top), size: directorySize(top) })
    return { root, blob }
  }

  test('CalculateNAR is refused at once while other clients are served; SIGTERM stops the daemon promptly', async (t) => {
    const daemon = await startDaemon(path.join(tmp, 'store'), '127.0.0.1:0')
    daemons.push(daemon)
    const client = new RawGrpc(daemon.url)
    const other = new RawGrpc(daemon.url)
    try {
      const { root, blob } = await plantBomb(client)
      let peakRss = rssMiB(daemon.proc.pid!)
      const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMiB(daemon.proc.pid!))), 50)
      // 20 bombs at once, and a well-behaved client asking for a blob's metadata meanwhile.
      const bombs = Array.from({ length: 20 }, async () => {
        const started = performance.now()
        const r = await client.unary(CALC, root, 30_000)
        return { ...r, ms: performance.now() - started }
      })
      const latencies: number[] = []
      for (let i = 0; i < 50; i++) {
        const started = performance.now()
        const r = await other.unary('/tvix.castore.v1.BlobService/Stat', statBlobRequest.encode({ digest: blob, sendChunks: false, sendBao: false }), 30_000)
        assert.equal(r.code, status.OK, r.details)
        latencies.push(performance.now() - started)
      }
      const results = await Promise.all(bombs)
      clearInterval(sampler)
      for (const r of results) {
        assert.equal(r.code, status.RESOURCE_EXHAUSTED, r.details)
        assert.match(r.details!, /refusing to render the NAR: its NAR would be at least \d+ bytes \(.*\), over the limit of 68719476736 bytes \(64\.0 GiB\) \(daemon --max-nar-size\)/)
      }
      latencies.sort((a, b) => a - b)
      t.diagnostic(`CalculateNAR refused in ${Math.max(...results.map((r) => r.ms)).toFixed(0)} ms at most; BlobService/Stat meanwhile: median ${latencies[25]!.toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms; daemon peak RSS ${peakRss.toFixed(0)} MiB`)
    } finally {
      client.close()
      other.close()
    }
    const started = performance.now()
    assert.equal(await daemon.stop(), 0)
    t.diagnostic(`SIGTERM to exit: ${(performance.now() - started).toFixed(0)} ms`)
    assert.match(daemon.log(), /tvix-store daemon stopped/)
  })

  test('with a limit above the bomb: a cancelled call stops its render, and SIGTERM stops one in flight', async (t) => {
    const daemon = await startDaemon(path.join(tmp, 'store-2'), '127.0.0.1:0', ['--max-nar-size', '1024T'])
    daemons.push(daemon)
    const pid = daemon.proc.pid!
    const client = new RawGrpc(daemon.url)
    const other = new RawGrpc(daemon.url)
    try {
      const { root, blob } = await plantBomb(client)
      // Started and cancelled by the client: the daemon must go idle again.
      const call = client.client.makeUnaryRequest(CALC, (b: Buffer) => b, (b: Buffer) => b, Buffer.from(root), () => {})
      await new Promise((r) => setTimeout(r, 1000))
      const busy = cpuSeconds(pid)
      call.cancel()
      await new Promise((r) => setTimeout(r, 500))
      const afterCancel = cpuSeconds(pid)
      await new Promise((r) => setTimeout(r, 2000))
      const idle = cpuSeconds(pid) - afterCancel
      t.diagnostic(`CPU used by the daemon: ${busy.toFixed(2)} s while rendering, ${idle.toFixed(2)} s in the 2 s after the cancel`)
      assert.ok(idle < 0.5, `the daemon went on working after the call was cancelled (${idle.toFixed(2)} s CPU in 2 s)`)

      // A render in flight, a well-behaved client served meanwhile, then SIGTERM.
      const inFlight = client.unary(CALC, root)
      const started = performance.now()
      const r = await other.unary('/tvix.castore.v1.BlobService/Stat', statBlobRequest.encode({ digest: blob, sendChunks: false, sendBao: false }))
      assert.equal(r.code, status.OK, r.details)
      t.diagnostic(`BlobService/Stat during a render: ${(performance.now() - started).toFixed(1)} ms; daemon RSS ${rssMiB(pid).toFixed(0)} MiB`)
      await new Promise((r) => setTimeout(r, 500))
      const stopping = performance.now()
      assert.equal(await daemon.stop(), 0)
      const ms = performance.now() - stopping
      t.diagnostic(`SIGTERM to exit with a render in flight: ${ms.toFixed(0)} ms`)
      assert.notEqual((await inFlight).code, status.OK)
      // It stopped the render rather than waiting out the shutdown grace period (10 s).
      assert.ok(ms < 10_000, `the daemon took ${ms.toFixed(0)} ms to stop`)
    } finally {
      client.close()
      other.close()
    }
  })
})

describe('a NAR bomb in a local store', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bomb-verify-'))
  after(() => fs.rmSync(tmp, { recursive: true, force: true }))

  test('verify --nar-hash skips it (over --max-nar-size) instead of rendering it, and says so', async (t) => {
    const dir = path.join(tmp, 'store')
    const store = await openLocalStore(dir)
    const name = `${nixbase32.encode(new Uint8Array(20).fill(7))}-bomb`
    try {
      const stage = store.blobs.stage()
      const blob = (await stage.put(Buffer.from('x'))).digest
      await stage.commit()
      const dirs = bombDirectories(blob)
      await store.directories.putClosure(dirs)
      const top = dirs.at(-1)!
      const node = { kind: 'directory' as const, name: Buffer.from(name), digest: directoryDigest(top), size: directorySize(top) }
      // Recorded with its true size (so only the limit stands between it and a render) and some hash.
      const size = await narSize(node, store)
      await store.pathInfos.put({ node, references: [], narinfo: { narSize: size, narSha256: new Uint8Array(32), signatures: [], referenceNames: [] } })
    } finally {
      await store.close()
    }
    const { child, exited } = spawnCli(['verify', '--nar-hash', '--store', dir])
    // Only a bound for a verify that would render the bomb for days.
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000)
    const r = await exited.finally(() => clearTimeout(guard))
    t.diagnostic(`verify --nar-hash of the bomb: ${r.ms.toFixed(0)} ms`)
    assert.equal(r.code, 0, r.stderr + r.stdout.toString())
    assert.match(r.stderr, new RegExp(`^skipped path '/nix/store/${name}': NAR hash not checked: its NAR would be at least \\d+ bytes \\(.*\\), over the limit of 68719476736 bytes \\(64\\.0 GiB\\) \\(--max-nar-size\\)$`, 'm'))
    assert.match(r.stderr, /no problems, 1 skipped/)
  })
})
