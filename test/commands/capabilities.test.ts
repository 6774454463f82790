/**
 * What only some stores can do (gc, verify, GC roots) is asked of the
 * store, not of its class: a gRPC store refuses each with one
 * ERR_UNSUPPORTED line (exit 1) before it dials anything, a memory store
 * collects garbage but has no roots and cannot verify.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { assertOneErrorLine, assertOneJsonError, runCli } from '../helpers/cli.js'

// Port 1 on loopback: nothing listens there, so a command that dialled would fail with ERR_BACKEND, not ERR_UNSUPPORTED.
const GRPC = 'grpc+http://[::1]:1'
const P = '/nix/store/vg7b7nlwcrld582iz3k9kcr43s8ycip1-seed'

describe('stores without a capability refuse it with one line', { concurrency: 2 }, () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-capabilities-')), 'f')
  fs.writeFileSync(file, 'x')

  const refusals: Array<[string[], RegExp]> = [
    [['gc', '--store', GRPC], /^gc needs a store that can collect garbage, and grpc\+http:\/\/\[::1\]:1 cannot/],
    [['gc', '--prune', '--store', GRPC], /^gc needs a store that can collect garbage/],
    [['delete', P, '--store', GRPC], /^delete needs a store that can collect garbage/],
    [['verify', '--store', GRPC], /^verify needs a store that can verify its own data, and grpc\+http:\/\/\[::1\]:1 cannot/],
    [['roots', 'list', '--store', GRPC], /^roots list needs a store that can keep GC roots/],
    [['roots', 'add', 'r', P, '--store', GRPC], /^roots add needs a store that can keep GC roots/],
    [['roots', 'remove', 'r', '--store', GRPC], /^roots remove needs a store that can keep GC roots/],
    [['query', '--roots', P, '--store', GRPC], /^query --roots needs a store that can keep GC roots/],
    [['import', '--root', 'r', file, '--store', GRPC], /^import --root needs a store that can keep GC roots/],
    [['copy', '--root', 'r', '--from', 'memory://', '--to', GRPC, P], /^copy --root needs a store that can keep GC roots, and grpc\+http:\/\/\[::1\]:1 cannot/],
    [['gc', '--store', 'memory://', '--blob-service-addr', GRPC], /^gc needs a store that can collect garbage, and a store combined from --\*-service-addr cannot/],
    [['gc', '--prune', '--store', 'memory://'], /^gc --prune needs a store with GC roots, and memory:\/\/ has none/],
    [['verify', '--store', 'memory://'], /^verify needs a store that can verify its own data, and memory:\/\/ cannot/],
    [['roots', 'list', '--store', 'memory://'], /^roots list needs a store that can keep GC roots/],
  ]
  for (const [args, message] of refusals) {
    test(`${args.join(' ')}: ERR_UNSUPPORTED, exit 1`, async () => {
      const r = await runCli([...args, '--json'])
      assert.equal(r.code, 1, r.stderr)
      assert.equal(r.stdout.length, 0)
      assertOneJsonError(r.stderr, 'ERR_UNSUPPORTED', message)
    })
  }

  test('daemon --gc-interval on a gRPC store: refused before it listens', async () => {
    // A socket in a folder that does not exist: were the refusal missing, the daemon would fail to bind rather than serve on.
    const r = await runCli(['daemon', '--store', GRPC, '--gc-interval', '1h', '--listen', 'unix:/nonexistent-tvix-folder/d.sock'])
    assert.equal(r.code, 1, r.stderr)
    assertOneErrorLine(r.stderr, /^error: daemon --gc-interval needs a store that can collect garbage, and grpc\+http:\/\/\[::1\]:1 cannot: run it where the data lives/)
  })

  test('gc on a memory store runs (an empty store: nothing to delete)', async () => {
    const r = await runCli(['gc', '--store', 'memory://', '--json'])
    assert.equal(r.code, 0, r.stderr)
    const report = JSON.parse(r.stdout.toString()) as Record<string, unknown>
    assert.deepEqual({ ...report, seconds: 0, writersHeldOffSeconds: 0 }, { dryRun: false, paths: [], blobs: 0, packs: 0, directories: 0, tempFiles: 0, bytes: 0, keptYoung: 0, seconds: 0, writersHeldOffSeconds: 0 })
  })
})
