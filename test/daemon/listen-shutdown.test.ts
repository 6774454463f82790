import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { type CliExit, REPO, spawnCli, assertOneErrorLine } from '../helpers/cli.js'
import { startDaemon } from '../helpers/daemon.js'
import { tempFiles } from '../helpers/snapshot.js'
import { spawnOwned } from '../helpers/spawn.js'

/** Runs `daemon` expecting it to refuse to start; one that starts anyway is stopped, and the test fails on its log. */
async function daemonRefuses(args: string[]): Promise<CliExit> {
  const { child, exited } = spawnCli(['daemon', ...args])
  let err = ''
  child.stderr!.on('data', (c: Buffer) => {
    err += c.toString()
    if (/ serving /.test(err)) child.kill('SIGTERM')
  })
  return exited
}

function assertOneError(r: CliExit, re: RegExp) {
  assertOneErrorLine(r.stderr, re)
}

describe('daemon --listen HOST:PORT', () => {
  test('a port in use: one error line saying so, no grpc-js log line', async () => {
    const busy = net.createServer()
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
    const port = (busy.address() as net.AddressInfo).port
    try {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-busy-'))
      const r = await daemonRefuses(['--store', path.join(dir, 'store'), '--listen', `127.0.0.1:${port}`])
      assert.equal(r.code, 1, r.stderr)
      assertOneError(r, new RegExp(`^error: cannot listen on 127\\.0\\.0\\.1:${port}: the address is already in use \\(another daemon\\?\\)$`))
      fs.rmSync(dir, { recursive: true, force: true })
    } finally {
      busy.close()
    }
  })
})

describe('daemon --listen unix:PATH', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-listen-'))
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  test('a socket path over 107 bytes (the system would truncate it) is a usage error', async () => {
    const dir = path.join(root, 'long')
    fs.mkdirSync(dir)
    const sock = path.join(dir, 's'.repeat(108 - dir.length))
    assert.equal(Buffer.byteLength(sock), 109)
    const r = await daemonRefuses(['--store', path.join(root, 'store'), '--listen', `unix:${sock}`])
    assert.equal(r.code, 2, r.stderr)
    assertOneError(r, /a unix socket path can have at most 107 bytes, this one has 109/)
    assert.deepEqual(fs.readdirSync(dir), [])
  })

  test('a socket path of exactly 107 bytes works', async () => {
    const dir = path.join(root, 'fits')
    fs.mkdirSync(dir)
    const sock = path.join(dir, 's'.repeat(106 - dir.length))
    assert.equal(Buffer.byteLength(sock), 107)
    const d = await startDaemon(path.join(root, 'store'), `unix:${sock}`)
    try {
      assert.deepEqual(fs.readdirSync(dir), [path.basename(sock)])
    } finally {
      assert.equal(await d.stop(), 0, d.log())
    }
    assert.deepEqual(fs.readdirSync(dir), [])
  })

  test('a missing folder is reported as missing, not as EACCES', async () => {
    const sock = path.join(root, 'missing', 'dir', 's.sock')
    const r = await daemonRefuses(['--store', path.join(root, 'store'), '--listen', `unix:${sock}`])
    assert.notEqual(r.code, 0)
    assertOneError(r, new RegExp(`cannot listen on unix:${sock}: its folder ${path.dirname(sock)} does not exist$`))
  })
})

describe('daemon shutdown with a client killed mid-upload', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-stopkill-'))
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  // A client that streams a Put forever, until it is killed.
  const uploader = `
    import { Client, credentials } from '@grpc/grpc-js'
    const c = new Client(process.argv[1], credentials.createInsecure())
    const call = c.makeClientStreamRequest('/tvix.castore.v1.BlobService/Put', (b) => b, (b) => b, () => {})
    let n = 0
    const pump = () => {
      const chunk = Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x40]), Buffer.alloc(1 << 20, n++ & 255)])
      if (call.write(chunk)) setImmediate(pump)
      else call.once('drain', pump)
    }
    pump()
  `

  test('nothing is logged after the stop line, and a client going away is no INTERNAL error', async () => {
    const store = path.join(root, 'store')
    const sock = path.join(root, 'd.sock')
    const d = await startDaemon(store, `unix:${sock}`)
    after(() => {
      if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL')
    })
    const client = spawnOwned(process.execPath, ['--input-type=module', '-e', uploader, `unix:${sock}`], { cwd: REPO, stdio: 'ignore' })
    const clientGone = new Promise((resolve) => client.once('exit', resolve))
    try {
      // The upload is under way once its pack's temp file exists (beside the store, which its first commit creates).
      while (tempFiles(store).length === 0) {
        assert.equal(client.exitCode, null, 'the uploading client died')
        await new Promise((r) => setTimeout(r, 20))
      }
      d.proc.kill('SIGTERM')
      while (!/stopping/.test(d.log())) await new Promise((r) => setTimeout(r, 20))
    } finally {
      client.kill('SIGKILL')
      await clientGone
    }
    // Already told to stop: wait for it (a second SIGTERM would kill it outright).
    const code = d.proc.exitCode ?? (await new Promise((resolve) => d.proc.once('exit', resolve)))
    assert.equal(code, 0, d.log())
    const lines = d.log().split('\n').filter(Boolean)
    assert.match(lines.at(-1)!, /tvix-store daemon stopped$/, d.log())
    assert.doesNotMatch(d.log(), /failed|INTERNAL|Premature/)
    assert.deepEqual(tempFiles(store), [])
  })
})
