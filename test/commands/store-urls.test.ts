/**
 * Store URLs in Nix's syntax that tvix-store does not serve are refused with
 * one line saying what they are, wherever a store URL is taken, and
 * nothing is created: not a folder named `daemon` or `local?root=/x`.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'

const SOME_PATH = '/nix/store/vg7b7nlwcrld582iz3k9kcr43s8ycip1-seed'

/** Nix's store URL forms (`nix help-stores`, Nix 2.8) and what the refusal must call them. */
const NIX_STORES: Array<[url: string, exit: number, says: RegExp]> = [
  ['auto', 2, /^error: "auto" is a Nix store URL \(Nix's default store\); tvix-store cannot open Nix's own stores: .*copy --closure.* \(for a folder of that name, write "\.\/auto"\)$/],
  ['daemon', 2, /^error: "daemon" is a Nix store URL \(the Nix daemon\);.* \(for a folder of that name, write "\.\/daemon"\)$/],
  ['local', 2, /^error: "local" is a Nix store URL \(a Nix local store\);.*"\.\/local"\)$/],
  ['local?root=/x', 2, /^error: "local\?root=\/x" is a Nix store URL \(a Nix local store\); tvix-store cannot open Nix's own stores: .*--nix-root DIR.*"\.\/local\?root=\/x"\)$/],
  ['unix:///nix/var/nix/daemon-socket/socket', 2, /^error: "unix:\/\/\/nix\/var\/nix\/daemon-socket\/socket" is a Nix store URL \(the Nix daemon on a socket\)/],
  ['ssh://build-host', 2, /^error: "ssh:\/\/build-host" is a Nix store URL \(a Nix store over SSH\)/],
  ['ssh-ng://build-host', 2, /^error: "ssh-ng:\/\/build-host" is a Nix store URL \(a Nix store over SSH\)/],
  ['dummy://', 2, /^error: "dummy:\/\/" is a Nix store URL \(Nix's dummy store\)/],
  ['https://cache.nixos.org', 1, /^error: "https:\/\/cache\.nixos\.org" is a Nix binary cache URL; tvix-store does not serve binary caches yet/],
  ['http://localhost:5000', 1, /is a Nix binary cache URL/],
  ['s3://bucket?region=eu-west-1', 1, /is a Nix binary cache URL/],
  // file:// with a binary cache's parameters is Nix's binary cache; plain file:///abs stays our local folder.
  ['file:///tmp/cache?compression=none', 1, /^error: "file:\/\/\/tmp\/cache\?compression=none" is a Nix binary cache URL/],
  ['mystore?trusted=1', 2, /^error: store URL "mystore\?trusted=1" has parameters, and tvix-store takes none \(for a folder of that name, write "\.\/mystore\?trusted=1"\)$/],
]

describe('Nix store URLs', { concurrency: 2 }, () => {
  for (const [url, exit, says] of NIX_STORES) {
    test(`${url}: refused in every place a store URL is taken, nothing created`, async () => {
      const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-urls-'))
      fs.mkdirSync(path.join(cwd, 'store'))
      for (const args of [
        ['copy', '--store', './store', '--to', url, SOME_PATH],
        ['copy', '--from', url, '--to', './store', SOME_PATH],
        ['ls', '--store', url, SOME_PATH],
        ['import', '--store', url, '--nar', '-', '--name', 'x'],
        ['narinfo', '--store', './store', '--blob-service-addr', url, SOME_PATH],
        ['daemon', '--store', url, '--listen', `unix:${cwd}/d.sock`],
      ]) {
        const r = await runCli(args, { cwd, input: '' })
        assert.equal(r.code, exit, `${args.join(' ')}: ${r.stderr}`)
        assertOneErrorLine(r.stderr, says)
        assert.deepEqual(fs.readdirSync(cwd), ['store'], `${args.join(' ')} created something`)
        assert.deepEqual(fs.readdirSync(path.join(cwd, 'store')), [])
      }
    })
  }

  test('a folder named like a Nix word is reachable as ./NAME', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-urls-'))
    fs.writeFileSync(path.join(cwd, 'f'), 'hi\n')
    const r = await runCli(['import', '--store', './daemon', 'f'], { cwd })
    assert.equal(r.code, 0, r.stderr)
    assert.ok(fs.existsSync(path.join(cwd, 'daemon', 'tvix-store.json')))
  })

  test('grpc+http:// without a port is refused, not dialled on 443', async () => {
    const r = await runCli(['ls', '--store', 'grpc+http://[::1]', SOME_PATH])
    assert.equal(r.code, 2, r.stderr)
    assertOneErrorLine(r.stderr, /^error: store URL "grpc\+http:\/\/\[::1\]" has no port: want grpc\+http:\/\/HOST:PORT \(`tvix-store daemon` listens on port 8000 by default\)$/)
  })
})
