import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { b3, b3Display, toHex } from '../../src/castore/digest.js'
import { type Directory, directoryDigest } from '../../src/castore/directory.js'
import { encodeDirectory } from '../../src/castore/proto.js'
import { encodePathInfo } from '../../src/store/proto.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { PathInfo } from '../../src/store/path-info.js'
import { runCli } from '../helpers/cli.js'

/**
 * Sizes that lie, planted on disk behind the admission check's back (an
 * older tvix-store, a hand-edited store): verify must report them, and
 * --repair remove what relies on them.
 */
describe('verify and lying sizes', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-verify-sizes-'))
  after(() => fs.rmSync(dir, { recursive: true, force: true }))

  const plant = (file: string, bytes: Uint8Array) => {
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.writeFileSync(file, bytes, { mode: 0o444 })
  }
  const madeUp = (tag: string) => `${nixbase32.encode(createHash('sha256').update(tag).digest().subarray(0, 20))}-${tag}`
  const pathInfo = (basename: string, node: PathInfo['node']): PathInfo => ({
    node: { ...node, name: Buffer.from(basename) },
    references: [],
    narinfo: { narSize: 1, narSha256: new Uint8Array(32), signatures: [], referenceNames: [] },
  })

  test('a file entry or root node claiming another size than its blob is a problem; --repair removes it', async () => {
    const store = path.join(dir, 'store')
    const input = path.join(dir, 'in')
    fs.mkdirSync(input)
    fs.writeFileSync(path.join(input, 'a'), 'Hello World!')
    const imported = await runCli(['import', '--store', store, input])
    assert.equal(imported.code, 0, imported.stderr.toString())
    const honest = imported.stdout.toString().trim()

    const blob = b3(Buffer.from('Hello World!'))
    const lying: Directory = { directories: [], files: [{ kind: 'file', name: Buffer.from('a'), digest: blob, size: 5, executable: false }], symlinks: [] }
    const lyingDigest = directoryDigest(lying)
    plant(path.join(store, 'dirs/b3', toHex(lyingDigest).slice(0, 2), toHex(lyingDigest)), encodeDirectory(lying))
    const viaDir = madeUp('via-dir')
    plant(path.join(store, 'pathinfo', viaDir.slice(0, 32)), encodePathInfo(pathInfo(viaDir, { kind: 'directory', name: new Uint8Array(0), digest: lyingDigest, size: 1 })))
    const bigFile = madeUp('big-file')
    plant(path.join(store, 'pathinfo', bigFile.slice(0, 32)), encodePathInfo(pathInfo(bigFile, { kind: 'file', name: new Uint8Array(0), digest: blob, size: 999999, executable: false })))

    const v = await runCli(['verify', '--store', store])
    assert.equal(v.code, 1, v.stderr.toString())
    assert.deepEqual(v.stdout.toString().trimEnd().split('\n').sort(), [
      `directory ${b3Display(lyingDigest)} lies: file "a" claims 5 bytes, but blob ${b3Display(blob)} has 12`,
      `path '/nix/store/${bigFile}' lies: root file "${bigFile}" claims 999999 bytes, but blob ${b3Display(blob)} has 12`,
      `path '/nix/store/${viaDir}' cannot be served: directory ${b3Display(lyingDigest)} is corrupt`,
    ].sort())

    const r = await runCli(['verify', '--store', store, '--repair'])
    assert.equal(r.code, 1, 'the problems found are still reported')
    const removed = r.stdout.toString().split('\n').filter((l) => l.startsWith('removed '))
    assert.equal(removed.length, 3, r.stdout.toString())
    assert.ok(!fs.existsSync(path.join(store, 'pathinfo', bigFile.slice(0, 32))))
    assert.ok(!fs.existsSync(path.join(store, 'pathinfo', viaDir.slice(0, 32))))
    const after = await runCli(['verify', '--store', store])
    assert.equal(after.code, 0, after.stdout.toString())
    const cat = await runCli(['cat', '--store', store, `${honest}/a`])
    assert.equal(cat.stdout.toString(), 'Hello World!')
  })
})
