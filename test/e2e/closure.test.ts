import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { runCli } from '../helpers/cli.js'
import { freePort, type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NIX_ENV } from '../helpers/nix.js'
import { buildNixClosure } from '../helpers/nix-closure.js'
import { exportNarOutput } from '../helpers/ops.js'
import { openStore } from '../../src/backends/open-store.js'
import { narInfo } from '../../src/ops/narinfo.js'
import { narInfoFields, renderNarInfo } from '../../src/store/narinfo.js'
import { narInfoJson } from '../../src/store/path-info-json.js'

const nix = (args: string[], input?: string) => execFileSync('nix', args, { env: NIX_ENV, input, maxBuffer: 1 << 28 }).toString()
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-closure-'))
const built = buildNixClosure(root)
const skip = built.skip
const top = built.closure?.top
if (skip) console.log(`skipping the closure copy tests: ${skip}`)

describe('copy --closure of a Nix-built closure with references', { skip }, () => {
  let daemon: RunningDaemon
  let listing: Array<{ path: string; narHash: string; narSize: number; references: string[]; deriver?: string }>
  before(async () => {
    daemon = await startDaemon(path.join(root, 'daemon-store'), `127.0.0.1:${await freePort()}`)
    listing = JSON.parse(nix(['path-info', '--json', '--recursive', top!]))
  })
  after(async () => {
    await daemon.stop()
  })

  test('imports the closure references first and narinfo matches nix copy, through a daemon and back', async () => {
    const imported = await runCli(['copy', '--closure', '-', '--to', daemon.url], { input: JSON.stringify(listing) })
    assert.equal(imported.code, 0, imported.stderr)
    assert.deepEqual(imported.stdout.toString().trim().split('\n'), listing.map((e) => e.path).sort())
    // Then from the daemon to a local store by store path: the closure follows.
    const local = path.join(root, 'local')
    const copied = await runCli(['copy', '--json', '--from', daemon.url, '--to', local, top!])
    assert.equal(copied.code, 0, copied.stderr)
    assert.equal(JSON.parse(copied.stdout.toString()).copied.length, listing.length)
    const cache = path.join(root, 'cache')
    nix(['copy', '--to', `file://${cache}?compression=none`, top!])
    // The top through the CLI; the paths below it in-process (the commands' ops and renderings), against the same Nix output.
    const opened = await openStore({ url: local, mustExist: true })
    try {
      for (const e of listing) {
        const cli = async (args: string[]) => {
          const r = await runCli([...args, '--store', local, e.path])
          assert.equal(r.code, 0, r.stderr)
          return r.stdout
        }
        const info = e.path === top ? undefined : await narInfo(opened, e.path)
        const text = info ? renderNarInfo(narInfoFields(info, opened.storeDir)) : (await cli(['narinfo'])).toString()
        const theirs = fs.readFileSync(path.join(cache, `${path.basename(e.path).slice(0, 32)}.narinfo`), 'utf8')
        assert.equal(text, theirs.split('\n').filter((l) => !l.startsWith('Sig: ')).join('\n'), e.path)
        // --json: what `nix path-info --json` says of the path in that cache (references, deriver as Nix writes them).
        const json = info ? narInfoJson(info, opened.storeDir) : JSON.parse((await cli(['narinfo', '--json'])).toString())
        const { signatures: _, ...want } = JSON.parse(nix(['path-info', '--json', '--store', `file://${cache}`, e.path]))[0]
        assert.deepEqual(json, want, e.path)
        const nar = info ? await exportNarOutput(local, e.path) : await cli(['export-nar'])
        assert.ok(nar.equals(execFileSync('nix-store', ['--dump', e.path], { env: NIX_ENV, maxBuffer: 1 << 28 })), e.path)
      }
    } finally {
      await opened.close()
    }
  })

  test('accepts the 2.19+ object form and exportReferencesGraph files; skips what the target has', async () => {
    const store = path.join(root, 'forms')
    const asObject = Object.fromEntries(listing.map(({ path: p, ...rest }) => [p, rest]))
    const first = await runCli(['copy', '--json', '--closure', '-', '--to', store], { input: JSON.stringify(asObject) })
    assert.equal(first.code, 0, first.stderr)
    assert.equal(JSON.parse(first.stdout.toString()).copied.length, listing.length)
    const graphFile = path.join(root, 'graph.json')
    fs.writeFileSync(graphFile, JSON.stringify({ closure: listing.map((e) => ({ ...e, closureSize: 0 })) }))
    const second = await runCli(['copy', '--json', '--closure', graphFile, '--to', store])
    assert.equal(second.code, 0, second.stderr)
    assert.equal(JSON.parse(second.stdout.toString()).skipped.length, listing.length)
  })

  test('a listing whose hash does not match the disk is refused and stores nothing', async () => {
    const store = path.join(root, 'bad')
    const bad = listing.map((e) => (e.path === top ? { ...e, narSize: e.narSize + 8 } : e))
    const r = await runCli(['copy', '--closure', '-', '--to', store], { input: JSON.stringify(bad) })
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^error: .* does not match the NAR hash and size the listing gives/)
    const ls = await runCli(['ls', '--store', store, top!])
    assert.equal(ls.code, 1)
  })
})
