/**
 * Store URLs in Nix's syntax that tvix-store does not serve are refused with
 * one line saying what they are, wherever a store URL is taken, and
 * nothing is created: not a folder named `daemon` or `local?root=/x`.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type OpenStoreOptions, openStore } from '../../src/backends/open-store.js'
import { StoreError } from '../../src/errors.js'
import { assertOneErrorLine, assertOneJsonError, runCli } from '../helpers/cli.js'

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
  // file:// with a binary cache's parameters is Nix's binary cache, which we name nix+file://; plain file:///abs stays our local folder.
  ['file:///tmp/cache?compression=none', 2, /^error: "file:\/\/\/tmp\/cache\?compression=none" is a Nix binary cache URL, and file:\/\/ names a tvix store folder here: write the cache as "nix\+file:\/\/\/tmp\/cache\?compression=none"$/],
  ['mystore?trusted=1', 2, /^error: store URL "mystore\?trusted=1" has parameters, and tvix-store takes none \(for a folder of that name, write "\.\/mystore\?trusted=1"\)$/],
]

/**
 * Every place the CLI takes a store URL, as the openStore options it passes
 * (src/cli/store-command.ts, src/commands/copy.ts): --store of a reading
 * command (mustExist) and of import/daemon (created when missing), copy
 * --to and --from, and a per-service flag beside a real --store.
 */
const PLACES: Array<[place: string, opts: (url: string, store: string) => OpenStoreOptions]> = [
  ['--store (reading command)', (url) => ({ url, mustExist: true })],
  ['--store (import, daemon)', (url) => ({ url })],
  ['copy --to', (url) => ({ url, storeDir: '/nix/store' })],
  ['copy --from', (url) => ({ url, storeDir: '/nix/store', mustExist: true })],
  ['--blob-service-addr', (url, store) => ({ url: store, blobServiceAddr: url, mustExist: true })],
  ['--path-info-service-addr', (url, store) => ({ url: store, pathInfoServiceAddr: url })],
]

/** The line and exit code the CLI prints for what openStore throws (reportError). */
async function refusal(opts: OpenStoreOptions): Promise<{ line: string; exit: number }> {
  try {
    const s = await openStore(opts)
    await s.close()
  } catch (e) {
    assert.ok(e instanceof StoreError, String(e))
    return { line: `error: ${e.message}`, exit: e.exitCode }
  }
  assert.fail('opened')
}

describe('Nix store URLs', () => {
  // In-process: relative URLs ("daemon", "local?root=/x") resolve against the working directory, which must stay empty.
  let cwd = ''
  const home = process.cwd()
  before(() => {
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-urls-'))
    fs.mkdirSync(path.join(cwd, 'store'))
    process.chdir(cwd)
  })
  after(() => process.chdir(home))

  for (const [url, exit, says] of NIX_STORES) {
    test(`${url}: refused by openStore in every place a store URL is taken, nothing created`, async () => {
      for (const [place, opts] of PLACES) {
        const r = await refusal(opts(url, path.join(cwd, 'store')))
        assert.equal(r.exit, exit, `${place}: ${r.line}`)
        assert.match(r.line, says, place)
        assert.doesNotMatch(r.line, /\n/)
        assert.deepEqual(fs.readdirSync(cwd), ['store'], `${place} created something`)
        assert.deepEqual(fs.readdirSync(path.join(cwd, 'store')), [])
      }
    })
  }

  // The wiring: each command's flags reach openStore, and the refusal is the CLI's one error line and exit code.
  for (const [url, exit, says] of NIX_STORES.filter(([u]) => u === 'local?root=/x')) {
    test(`${url}: refused by the CLI in every place a store URL is taken, nothing created`, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-urls-'))
      fs.mkdirSync(path.join(dir, 'store'))
      for (const args of [
        ['copy', '--store', './store', '--to', url, SOME_PATH],
        ['copy', '--from', url, '--to', './store', SOME_PATH],
        ['ls', '--store', url, SOME_PATH],
        ['import', '--store', url, '--nar', '-', '--name', 'x'],
        ['narinfo', '--store', './store', '--blob-service-addr', url, SOME_PATH],
        ['daemon', '--store', url, '--listen', `unix:${dir}/d.sock`],
      ]) {
        const r = await runCli(args, { cwd: dir, input: '' })
        assert.equal(r.code, exit, `${args.join(' ')}: ${r.stderr}`)
        assertOneErrorLine(r.stderr, says)
        assert.deepEqual(fs.readdirSync(dir), ['store'], `${args.join(' ')} created something`)
        assert.deepEqual(fs.readdirSync(path.join(dir, 'store')), [])
      }
    })
  }
})

describe('store URLs: folders and ports', () => {
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

describe('store URLs come from the registry of backends', () => {
  const KNOWN = 'a path, file:///PATH, memory://, grpc+http://HOST:PORT, grpc+https://HOST:PORT, grpc+unix:///SOCKET, nix+file:///DIR, http://HOST[:PORT][/PATH], https://HOST[:PORT][/PATH], nix+http://…, nix+https://…, s3://BUCKET[/PREFIX]?endpoint=URL&region=R, postgres://USER@HOST[:PORT]/DB, postgresql://…'

  test('an unknown scheme is refused naming every known form, for --store and the per-service flags alike', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-urls-'))
    const says = new RegExp(`^error: unknown store URL scheme "gopher:" \\(known: ${KNOWN.replace(/[.*+?()[\]\\/]/g, '\\$&')}\\)$`)
    // The per-service flags in-process (openStore, as the CLI calls it); --store through the CLI, text and --json.
    for (const opts of [
      { url: path.join(cwd, 'store'), pathInfoServiceAddr: 'gopher://host', mustExist: true },
      { url: path.join(cwd, 'store'), directoryServiceAddr: 'gopher://host' },
    ]) {
      const r = await refusal(opts)
      assert.equal(r.exit, 2, r.line)
      assert.match(r.line, says)
    }
    const r = await runCli(['ls', '--store', 'gopher://host', SOME_PATH], { cwd })
    assert.equal(r.code, 2, r.stderr)
    assertOneErrorLine(r.stderr, says)
    const json = await runCli(['ls', '--json', '--store', 'gopher://host', SOME_PATH], { cwd })
    assertOneJsonError(json.stderr, 'ERR_USAGE', /^unknown store URL scheme "gopher:" \(known: /)
    assert.deepEqual(fs.readdirSync(cwd), [])
  })

  test('s3:// serves blobs only: asked for Directories or PathInfos it is refused, saying it is not a Nix binary cache, nothing dialled', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-urls-'))
    const url = 's3://bucket?region=eu-west-1'
    const says = /^error: store URL "s3:\/\/bucket\?region=eu-west-1" does not serve (directories or pathInfos|pathInfos) \(s3:\/\/ holds a tvix store's blobs, not a Nix binary cache\): give (--directory-service-addr and )?--path-info-service-addr$/
    for (const [place, opts] of PLACES.filter(([place]) => place !== '--blob-service-addr')) {
      const r = await refusal(opts(url, path.join(cwd, 'store')))
      assert.equal(r.exit, 2, `${place}: ${r.line}`)
      assert.match(r.line, says, place)
    }
    const r = await runCli(['ls', '--store', url, SOME_PATH], { cwd })
    assert.equal(r.code, 2, r.stderr)
    assertOneErrorLine(r.stderr, says)
    assert.deepEqual(fs.readdirSync(cwd), [])
  })

  test('each service from its own URL: blobs, Directories and PathInfos in three stores, --store not used', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-urls-'))
    fs.mkdirSync(path.join(cwd, 'tree'))
    fs.writeFileSync(path.join(cwd, 'tree', 'f'), 'hello\n')
    const services = ['--blob-service-addr', './b', '--directory-service-addr', 'file://' + path.join(cwd, 'd'), '--path-info-service-addr', './p']
    const imported = await runCli(['import', '--store', './unused', ...services, 'tree'], { cwd })
    assert.equal(imported.code, 0, imported.stderr)
    const p = imported.stdout.toString().trim()
    assert.deepEqual(fs.readdirSync(cwd).sort(), ['b', 'd', 'p', 'tree'])
    const cat = await runCli(['cat', '--store', './unused', ...services, `${p}/f`], { cwd })
    assert.equal(cat.code, 0, cat.stderr)
    assert.equal(cat.stdout.toString(), 'hello\n')
    // Each store holds its one kind of object, so another combination lacks the file's blob.
    const wrong = await runCli(['cat', '--store', './p', '--directory-service-addr', './d', `${p}/f`], { cwd })
    assert.equal(wrong.code, 1)
    assertOneErrorLine(wrong.stderr, /^error: /)
  })

  test('a service URL that is --store itself opens that one store, capabilities included (verify runs)', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-urls-'))
    fs.writeFileSync(path.join(cwd, 'f'), 'x\n')
    for (const args of [['import', 'f'], ['verify']]) {
      const r = await runCli([...args, '--store', './s', '--blob-service-addr', './s'], { cwd })
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
    }
  })
})
