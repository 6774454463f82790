/**
 * Writers that never finish must not stop the world: an upload to the
 * daemon that sends one chunk and then nothing, and a local `import --nar -`
 * whose pipe never closes, hold no lock while they wait for input. gc
 * runs meanwhile, and so does every other writer, local or through the
 * daemon. The test fails if a step does not finish within two minutes of
 * the one before (slower steps on a loaded machine are fine): before write
 * sessions became optimistic, gc waited for the stalled writers forever
 * and held every new writer off behind it.
 */
import assert from 'node:assert/strict'
import { Client, credentials } from '@grpc/grpc-js'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { BIN, REPO, runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { entry, nar, regular, toks } from '../helpers/nar.js'
import { killGroup, spawnOwned, whileProgressing } from '../helpers/spawn.js'

/** How long one step may take; gc's own wait for commits gives up after 2 minutes too. */
const STEP_MS = 150_000

describe('stalled writers hold nothing', () => {
  let dir: string
  let store: string
  let daemon: RunningDaemon
  let client: Client
  const cleanups: Array<() => void> = []

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-stalled-'))
    store = path.join(dir, 'store')
    fs.writeFileSync(path.join(dir, 'seed.txt'), 'seed\n')
    assert.equal((await runCli(['import', '--store', store, path.join(dir, 'seed.txt')])).code, 0)
    daemon = await startDaemon(store, '127.0.0.1:0')
    client = new Client(daemon.url.replace('grpc+http://', ''), credentials.createInsecure())
  })
  after(async () => {
    for (const c of cleanups) c()
    client.close()
    await daemon.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  /** A BlobService.Put that sends one 64 KiB chunk (BlobChunk field 1) and never ends. */
  function stalledUpload(): void {
    const raw = (b: Buffer) => b
    const call = client.makeClientStreamRequest('/tvix.castore.v1.BlobService/Put', raw, raw, () => {})
    const data = Buffer.alloc(64 << 10, 7)
    call.write(Buffer.concat([Buffer.from([0x0a, 0x80, 0x80, 0x04]), data]))
    cleanups.push(() => call.cancel())
  }

  /** A local import reading a NAR from a pipe that delivers half of it and stays open. */
  function stalledLocalImport(): void {
    const child = spawnOwned(process.execPath, [BIN, 'import', '--store', store, '--nar', '-', '--name', 'half'], { cwd: REPO, stdio: ['pipe', 'ignore', 'ignore'] })
    const whole = nar(toks('(', 'type', 'directory', entry('a', regular('a'.repeat(5000))), entry('b', regular('b')), ')'))
    child.stdin!.write(whole.subarray(0, whole.length >> 1))
    cleanups.push(() => killGroup(child))
  }

  test('gc, local imports and imports through the daemon all finish while an upload and a local import are stalled', () => whileProgressing(STEP_MS, async (step) => {
    stalledUpload()
    stalledLocalImport()
    // Give both time to start and send what they will send.
    await new Promise((r) => setTimeout(r, 1000))

    const gc = await runCli(['gc', '--store', store, '--grace', '0'])
    assert.equal(gc.code, 0, gc.stderr)
    step()

    const f = path.join(dir, 'local.txt')
    fs.writeFileSync(f, 'written while others stall\n')
    const local = await runCli(['import', '--store', store, f])
    assert.equal(local.code, 0, local.stderr)
    step()

    const g = path.join(dir, 'remote')
    fs.mkdirSync(g)
    fs.writeFileSync(path.join(g, 'x'), 'through the daemon\n')
    const remote = await runCli(['import', '--store', daemon.url, g])
    assert.equal(remote.code, 0, remote.stderr)
    step()

    // And a second gc while they still stall, then the store is whole.
    assert.equal((await runCli(['gc', '--store', store, '--grace', '0'])).code, 0)
    step()
    const v = await runCli(['verify', '--store', store])
    assert.equal(v.code, 0, v.stdout.toString() + v.stderr)
    assert.equal((await runCli(['cat', '--store', store, `${remote.stdout.toString().trim()}/x`])).stdout.toString(), 'through the daemon\n')
  }))
})
