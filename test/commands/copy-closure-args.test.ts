/** `copy --closure` arguments that cannot work are refused with a reason and a hint. */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test } from 'node:test'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'

// A path no machine has in /nix/store: the listing comes from a chroot store.
const LISTED = '/nix/store/00000000000000000000000000000000-only-in-a-chroot'
const LISTING = JSON.stringify([{ path: LISTED, narHash: 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=', narSize: 120, references: [] }])

describe('copy --closure', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-closure-args-'))

  test('a listed path missing from the filesystem: named, with the --nix-root hint', async () => {
    const store = path.join(root, 'a')
    const r = await runCli(['copy', '--closure', '-', '--to', store], { input: LISTING })
    assert.equal(r.code, 1, r.stderr)
    assertOneErrorLine(
      r.stderr,
      new RegExp(`^error: ${LISTED} does not exist: the listing names ${LISTED}, which is imported from the filesystem \\(for a listing from a chroot store, such as local\\?root=DIR, give --nix-root DIR\\)$`),
    )
    assert.ok(!fs.existsSync(store))
  })

  test('with --nix-root, the path under it is named', async () => {
    const r = await runCli(['copy', '--closure', '-', '--nix-root', path.join(root, 'chroot'), '--to', path.join(root, 'b')], { input: LISTING })
    assert.equal(r.code, 1, r.stderr)
    assertOneErrorLine(r.stderr, new RegExp(`^error: ${path.join(root, 'chroot')}${LISTED} does not exist: the listing names ${LISTED}, which is imported from the filesystem$`))
  })

  test('--from is refused, not silently ignored', async () => {
    const r = await runCli(['copy', '--closure', '-', '--from', path.join(root, 'src'), '--to', path.join(root, 'c')], { input: LISTING })
    assert.equal(r.code, 2, r.stderr)
    assertOneErrorLine(r.stderr, /^error: --closure imports from the filesystem, not from --from: drop --from \(and give --nix-root DIR for a chroot store\)$/)
    assert.ok(!fs.existsSync(path.join(root, 'c')))
  })
})
