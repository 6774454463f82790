import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { NixStore, nixMissing, runNix } from '../helpers/nix.js'
import { buildNixClosure, importNixClosure } from '../helpers/nix-closure.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-signing-'))
after(() => fs.rmSync(root, { recursive: true, force: true }))
const missing = nixMissing()
if (missing) console.log(`skipping the key tests against Nix: ${missing}`)
const built = buildNixClosure(root)
if (built.skip) console.log(`skipping the signature tests against Nix: ${built.skip}`)

async function ok(args: string[], input?: string): Promise<string> {
  const r = await runCli(args, { input })
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout.toString()
}

async function nixOk(cmd: string, args: string[]): Promise<string> {
  const r = await runNix(cmd, args)
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`)
  return r.stdout.toString()
}

describe('keys interoperate with Nix 2.8', { skip: missing }, () => {
  test('the public key of a secret Nix generated equals the one Nix wrote', async () => {
    const sk = path.join(root, 'nix.sk')
    const pk = path.join(root, 'nix.pk')
    await nixOk('nix-store', ['--generate-binary-cache-key', 'nix-made-1', sk, pk])
    // From a file, and from stdin.
    assert.equal(await ok(['key', 'public', sk]), fs.readFileSync(pk, 'utf8') + '\n')
    assert.equal(await ok(['key', 'public'], fs.readFileSync(sk, 'utf8')), fs.readFileSync(pk, 'utf8') + '\n')
  })
})

describe('signatures against nix store sign on a Nix-built closure', { skip: built.skip }, () => {
  const sk = path.join(root, 'ours.sk')
  const ourStore = path.join(root, 'ours')
  const nixStore = new NixStore(path.join(root, 'nix'))
  let top = ''
  let publicKey = ''
  before(async () => {
    top = built.closure!.top
    // A key we generate, used by Nix and by us alike.
    fs.writeFileSync(sk, await ok(['key', 'generate', 'tvix-test-1']))
    publicKey = (await ok(['key', 'public', sk])).trim()
    await importNixClosure(built.closure!, ourStore)
    // Nix signs a private copy: /nix/store's own database is other tests' reference.
    await nixOk('nix', ['copy', '--no-check-sigs', '--to', nixStore.url, top])
  })

  /** The paths `verify` (ours on stdout, Nix's on stderr) says are untrusted, sorted. */
  const untrusted = (text: string) => text.split('\n').filter((l) => / is untrusted$/.test(l)).sort()
  const allUntrusted = () => built.closure!.listing.map((e) => `path '${e.path}' is untrusted`).sort()

  test('unsigned, every path of the closure is untrusted, to Nix and to our verify', async () => {
    const theirs = await runNix('nix', ['store', 'verify', '--store', nixStore.url, '--sigs-needed', '1', '--trusted-public-keys', publicKey, '-r', top])
    assert.notEqual(theirs.code, 0)
    assert.deepEqual(untrusted(theirs.stderr.replace(/^error: /gm, '')), allUntrusted())
    const mine = await runCli(['verify', '--store', ourStore, '--trusted-public-keys', publicKey])
    assert.equal(mine.code, 1, mine.stderr)
    assert.deepEqual(untrusted(mine.stdout.toString()), allUntrusted())
  })

  test('our signature of each path equals, byte for byte, the one nix store sign wrote', async () => {
    await nixOk('nix', ['store', 'sign', '--store', nixStore.url, '--key-file', sk, '-r', top])
    const r = await runCli(['sign', '--store', ourStore, '--secret-key-file', sk, '-r', top])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stderr, `added ${built.closure!.listing.length} signatures\n`)
    const theirs = JSON.parse(await nixOk('nix', ['path-info', '--store', nixStore.url, '--json', '--sigs', '-r', top])) as Array<{ path: string; signatures?: string[] }>
    const mine = JSON.parse(await ok(['path-info', '--store', ourStore, '--json', '-r', top])) as Array<{ path: string; signatures?: string[] }>
    const sigs = (l: typeof theirs) => Object.fromEntries(l.map((e) => [e.path, e.signatures]))
    assert.equal(theirs.length, 4)
    for (const e of theirs) assert.equal(e.signatures?.length, 1, `Nix signed ${e.path} once`)
    assert.deepEqual(sigs(mine), sigs(theirs))
    // narinfo prints the stored signature as a Sig: line.
    const narinfo = await ok(['narinfo', '--store', ourStore, top])
    assert.deepEqual(narinfo.split('\n').filter((l) => l.startsWith('Sig: ')), [`Sig: ${theirs.find((e) => e.path === top)!.signatures![0]}`])
    // Signing again adds nothing.
    const again = await runCli(['sign', '--store', ourStore, '--secret-key-file', sk, '--json', top])
    assert.equal(again.stdout.toString(), '{"added":0}\n')
  })

  test('signed, Nix verifies with the public key we derived, and so does our verify', async () => {
    await nixOk('nix', ['store', 'verify', '--store', nixStore.url, '--sigs-needed', '1', '--trusted-public-keys', publicKey, '-r', top])
    const mine = await runCli(['verify', '--store', ourStore, '--trusted-public-keys', publicKey])
    assert.equal(mine.code, 0, mine.stdout.toString() + mine.stderr)
    // One signature each: two needed is too few, for Nix as for us.
    const theirs = await runNix('nix', ['store', 'verify', '--store', nixStore.url, '--sigs-needed', '2', '--trusted-public-keys', publicKey, '-r', top])
    assert.deepEqual(untrusted(theirs.stderr.replace(/^error: /gm, '')), allUntrusted())
    const two = await runCli(['verify', '--store', ourStore, '--trusted-public-keys', publicKey, '--sigs-needed', '2'])
    assert.equal(two.code, 1)
    assert.deepEqual(untrusted(two.stdout.toString()), allUntrusted())
  })

  test('Nix accepts the signatures we stored: nix copy from a binary cache we wrote checks them, nix store verify trusts them', async () => {
    // Signed by the test above; a cache we write carries them as Sig: lines.
    const cache = `file://${path.join(root, 'cache')}`
    await ok(['copy', '--store', ourStore, '--to', `nix+${cache}`, top])
    await nixOk('nix', ['store', 'verify', '--store', cache, '--sigs-needed', '1', '--trusted-public-keys', publicKey, '-r', top])
    // Without --no-check-sigs, Nix refuses a path whose signature it cannot check against a trusted key.
    const target = new NixStore(path.join(root, 'nix-from-ours'))
    await nixOk('nix', ['copy', '--from', cache, '--to', target.url, '--option', 'trusted-public-keys', publicKey, top])
    const theirs = JSON.parse(await nixOk('nix', ['path-info', '--store', target.url, '--json', '--sigs', '-r', top])) as Array<{ path: string; signatures?: string[] }>
    const mine = JSON.parse(await ok(['path-info', '--store', ourStore, '--json', '-r', top])) as Array<{ path: string; signatures?: string[] }>
    assert.equal(theirs.length, built.closure!.listing.length)
    assert.deepEqual(Object.fromEntries(theirs.map((e) => [e.path, e.signatures])), Object.fromEntries(mine.map((e) => [e.path, e.signatures])))
    // And a key that did not sign them is refused.
    const other = (await ok(['key', 'public', '-'], await ok(['key', 'generate', 'tvix-test-2']))).trim()
    const refused = await runNix('nix', ['copy', '--from', cache, '--to', new NixStore(path.join(root, 'nix-refused')).url, '--option', 'trusted-public-keys', other, top])
    assert.notEqual(refused.code, 0, refused.stderr)
    assert.match(refused.stderr, /lacks a valid signature/)
  })
})

describe('bad keys: one error line, the store unchanged', () => {
  const store = path.join(root, 'bad')
  const keyFile = (name: string, text: string) => {
    const f = path.join(root, name)
    fs.writeFileSync(f, text)
    return f
  }
  // One case through the CLI for the exit code and the error line; the other bad keys are test/store/signing.test.ts's.
  const cases: Array<[string, string, RegExp]> = [
    // 32 bytes where a secret key has 64: a public key given as a secret.
    ['wrong length', `k-1:${Buffer.alloc(32, 7).toString('base64')}`, /secret key 'k-1' is not valid: 32 bytes, want 64/],
  ]
  for (const [what, text, re] of cases) {
    test(`a secret key with ${what}: exit 1`, async () => {
      const f = keyFile(what.replace(/ /g, '-'), text)
      const r = await runCli(['sign', '--store', store, '--secret-key-file', f, '--all'])
      assert.equal(r.code, 1)
      assertOneErrorLine(r.stderr, re)
      assert.equal(fs.existsSync(store), false, 'the store was never opened')
    })
  }

  test('a key name with a colon: usage error, exit 2', async () => {
    const r = await runCli(['key', 'generate', 'a:b'])
    assert.equal(r.code, 2)
    assertOneErrorLine(r.stderr, /invalid key name "a:b"/)
    assert.equal(r.stdout.length, 0)
  })
})
