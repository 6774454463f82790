import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type CliResult, runCli, assertOneErrorLine } from '../helpers/cli.js'
import { NixStore, nixMissing } from '../helpers/nix.js'
import { type Tmpfs, mountTmpfs } from '../helpers/tmpfs.js'
import { spawnOwned } from '../helpers/spawn.js'
import { randomBytes } from '../helpers/trees.js'

function assertOneError(r: CliResult, re: RegExp) {
  assert.notEqual(r.code, 0, r.stderr)
  assertOneErrorLine(r.stderr, re)
}

/** `export-nar -o FILE`: replaced atomically when FILE is (or links to) a regular file, written through otherwise. */
describe('export-nar -o', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-out-'))
  const store = path.join(root, 'store')
  const input = path.join(root, 'data.bin')
  let storePath: string
  let expected: Buffer
  const exportTo = (out: string) => runCli(['export-nar', '--store', store, storePath, '-o', out])

  before(async () => {
    fs.writeFileSync(input, randomBytes(3 << 20, 5))
    const r = await runCli(['import', '--store', store, input])
    assert.equal(r.code, 0, r.stderr)
    storePath = r.stdout.toString().trim()
    const self = await runCli(['export-nar', '--store', store, storePath])
    assert.equal(self.code, 0, self.stderr)
    expected = self.stdout
  })
  after(() => fs.rmSync(root, { recursive: true, force: true }))

  test('a new file gets the NAR nix-store --dump writes, without temp files beside it', async (t) => {
    const out = path.join(root, 'new.nar')
    const r = await exportTo(out)
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(fs.readFileSync(out), expected)
    assert.deepEqual(fs.readdirSync(root).filter((n) => n.includes('.tmp-')), [])
    const why = nixMissing()
    if (why) return t.skip(why)
    assert.deepEqual(fs.readFileSync(out), NixStore.dump(input))
  })

  test('a device (a null device like /dev/null) is written through, not replaced', async () => {
    // A private node of the null device: a test run against code that replaces
    // its target must never take the system's /dev/null with it.
    const dev = path.join(root, 'null')
    try {
      execFileSync('mknod', [dev, 'c', '1', '3'], { stdio: 'pipe' })
    } catch {
      fs.symlinkSync('/dev/null', dev)
    }
    const before_ = fs.statSync(dev)
    assert.ok(before_.isCharacterDevice())
    const r = await exportTo(dev)
    assert.equal(r.code, 0, r.stderr)
    const after_ = fs.statSync(dev)
    assert.ok(after_.isCharacterDevice())
    assert.equal(after_.ino, before_.ino)
    assert.equal(after_.rdev, before_.rdev)
    assert.deepEqual(fs.readdirSync(root).filter((n) => n.includes('.tmp-')), [])
  })

  test('a FIFO is written through: its reader gets the NAR', async () => {
    const fifo = path.join(root, 'fifo')
    execFileSync('mkfifo', [fifo])
    const cat = spawnOwned('cat', [fifo], { stdio: ['ignore', 'pipe', 'inherit'] })
    const parts: Buffer[] = []
    cat.stdout!.on('data', (c: Buffer) => parts.push(c))
    const read = new Promise<Buffer>((resolve) => cat.once('close', () => resolve(Buffer.concat(parts))))
    try {
      const r = await exportTo(fifo)
      assert.equal(r.code, 0, r.stderr)
      assert.ok(fs.lstatSync(fifo).isFIFO(), 'the FIFO was replaced')
      assert.deepEqual(await read, expected)
    } finally {
      // A reader that never got a writer would wait forever.
      cat.kill()
    }
  })

  test('a symlink to a file: the link stays, the file it points to gets the NAR', async () => {
    const target = path.join(root, 'target.nar')
    const link = path.join(root, 'link.nar')
    fs.writeFileSync(target, 'old contents')
    fs.symlinkSync('target.nar', link)
    const r = await exportTo(link)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(fs.readlinkSync(link), 'target.nar')
    assert.deepEqual(fs.readFileSync(target), expected)
    assert.deepEqual(fs.readdirSync(root).filter((n) => n.includes('.tmp-')), [])
  })

  test('a directory: one clear error line, nothing written', async () => {
    const dir = path.join(root, 'adir')
    fs.mkdirSync(dir)
    assertOneError(await exportTo(dir), new RegExp(`cannot write ${dir}: it is a directory$`))
    assert.deepEqual(fs.readdirSync(dir), [])
    assert.deepEqual(fs.readdirSync(root).filter((n) => n.includes('.tmp-')), [])
  })

  test('a missing folder: reported as missing', async () => {
    assertOneError(await exportTo('/nonexistent/dir/x'), /cannot write \/nonexistent\/dir\/x: its folder \/nonexistent\/dir does not exist$/)
  })

  describe('onto a full disk', () => {
    let fsys: Tmpfs | undefined
    let skip: string | undefined
    let big: string
    before(async () => {
      const m = mountTmpfs(20)
      if (typeof m === 'string') {
        skip = m
        return
      }
      fsys = m
      const file = path.join(root, 'big.bin')
      fs.writeFileSync(file, randomBytes(30 << 20, 6))
      const r = await runCli(['import', '--store', store, file])
      assert.equal(r.code, 0, r.stderr)
      big = r.stdout.toString().trim()
    })
    after(() => fsys?.remove())

    test('one error line, no partial file or temp file left', async (t) => {
      if (skip) return t.skip(skip)
      const out = path.join(fsys!.dir, 'big.nar')
      const r = await runCli(['export-nar', '--store', store, big, '-o', out])
      assertOneError(r, new RegExp(`no space left on device while writing ${out}$`))
      assert.deepEqual(fs.readdirSync(fsys!.dir), [])
    })
  })
})
