/**
 * src/codecs against real Nix 2.8, both ways: every compression Nix writes
 * into a binary cache (`nix copy --to file://…?compression=X`) decodes with
 * `decompressor(X)` to the NAR `nix-store --dump` gives; every compression
 * we write (`compressor(X)`, a cache whose NAR we recompressed) is read back
 * by `nix copy --from`; and a daemon serving zstd-compressed NARs
 * (`--http-compression zstd`) is a cache `nix copy --from` substitutes from.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { buffer } from 'node:stream/consumers'
import { pipeline } from 'node:stream/promises'
import { after, before, describe, test } from 'node:test'
import { READABLE, WRITABLE, compressor, decompressor, narFileExtension } from '../../src/codecs/index.js'
import { parseNarInfo, renderNarInfo } from '../../src/store/narinfo.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import { assertOneErrorLine, runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { NixStore, nixMissing, runNix } from '../helpers/nix.js'
import { buildNixClosure, importNixClosure } from '../helpers/nix-closure.js'
import { randomBytes, rng } from '../helpers/trees.js'

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-nix-compressions-'))
const skip = nixMissing()
if (skip) console.log(`skipping the compression tests against Nix: ${skip}`)

/** A few files, one of ~200 KiB of text (compressible, several codec blocks), one incompressible, an executable, a symlink. */
function makeCompressionTree(dest: string): string {
  const r = rng(13)
  const lines: string[] = []
  for (let i = 0; lines.join('').length < 200 * 1024; i++) lines.push(`line ${i}: ${Math.floor(r() * 1e9).toString(36)} ${'abcdefgh'.slice(0, i % 8)}\n`)
  fs.mkdirSync(path.join(dest, 'sub'), { recursive: true })
  fs.writeFileSync(path.join(dest, 'text.txt'), lines.join(''))
  fs.writeFileSync(path.join(dest, 'sub/random.bin'), randomBytes(40 * 1024, 13))
  fs.writeFileSync(path.join(dest, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 })
  fs.symlinkSync('text.txt', path.join(dest, 'link'))
  return dest
}

async function nixOk(cmd: string, args: string[]): Promise<void> {
  const r = await runNix(cmd, args)
  assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`)
}

const hashPartOf = (storePath: string) => path.basename(storePath).slice(0, 32)

/** The narinfo of `storePath` in the file:// cache at `dir`, parsed. */
const narInfoIn = (dir: string, storePath: string) => parseNarInfo(fs.readFileSync(path.join(dir, `${hashPartOf(storePath)}.narinfo`), 'utf8'), '/nix/store')

describe('compressions, against Nix 2.8', { skip }, () => {
  const tree = makeCompressionTree(path.join(root, 'compress-me'))
  const nixStore = new NixStore(path.join(root, 'nix'))
  let storePath: string
  let dump: Buffer
  const cacheOf = (c: string) => path.join(root, `cache-${c}`)

  before(() => {
    storePath = nixStore.add(tree)
    dump = NixStore.dump(tree)
  })

  for (const c of READABLE) {
    test(`what nix copy --to file://…?compression=${c} writes decodes to the NAR`, async (t) => {
      const r = await runNix('nix', ['copy', '--store', nixStore.url, '--to', `file://${cacheOf(c)}?compression=${c}`, storePath])
      if (r.code !== 0 && /unknown compression|not supported|unsupported/i.test(r.stderr)) {
        console.log(`skipping compression=${c}: Nix 2.8 does not write it here: ${r.stderr.trim().split('\n').pop()}`)
        return t.skip(`Nix 2.8 refuses compression=${c}`)
      }
      assert.equal(r.code, 0, r.stderr)
      const info = narInfoIn(cacheOf(c), storePath)
      assert.equal(info.compression, c)
      assert.ok(info.url.endsWith(narFileExtension(c)), `${info.url} ends in ${narFileExtension(c)}`)
      const nar = await buffer(fs.createReadStream(path.join(cacheOf(c), info.url)).pipe(decompressor(info.compression)))
      assert.ok(nar.equals(dump), `compression=${c}: the decompressed NAR (${nar.length} bytes) is not nix-store --dump's (${dump.length})`)
    })
  }

  for (const c of WRITABLE) {
    test(`what compressor(${c}) writes, nix copy --from file://… reads`, async () => {
      // Nix's own compression=none cache, its NAR recompressed by us and its narinfo rewritten to match.
      const from = cacheOf('none')
      const dir = path.join(root, `ours-${c}`)
      fs.mkdirSync(path.join(dir, 'nar'), { recursive: true })
      fs.copyFileSync(path.join(from, 'nix-cache-info'), path.join(dir, 'nix-cache-info'))
      const info = narInfoIn(from, storePath)
      const tmp = path.join(dir, 'nar', 'tmp')
      const sha = createHash('sha256')
      await pipeline(fs.createReadStream(path.join(from, info.url)), compressor(c), async function* (src: AsyncIterable<Buffer>) {
        for await (const chunk of src) {
          sha.update(chunk)
          yield chunk
        }
      }, fs.createWriteStream(tmp))
      const fileHash = nixbase32.encode(sha.digest())
      const url = `nar/${fileHash}${narFileExtension(c)}`
      fs.renameSync(tmp, path.join(dir, url))
      const narinfo = { ...info, url, compression: c, fileHash: `sha256:${fileHash}`, fileSize: fs.statSync(path.join(dir, url)).size }
      fs.writeFileSync(path.join(dir, `${hashPartOf(storePath)}.narinfo`), renderNarInfo(narinfo))
      const target = new NixStore(path.join(root, `fresh-${c}`))
      await nixOk('nix', ['copy', '--from', `file://${dir}`, '--no-check-sigs', '--to', target.url, storePath])
      assert.ok(NixStore.dump(path.join(target.root, storePath)).equals(dump))
    })
  }
})

const built = buildNixClosure(root)
if (built.skip) console.log(`skipping the --http-compression test: ${built.skip}`)

describe('daemon --http-compression zstd', { skip: built.skip }, () => {
  let daemon: RunningDaemon
  let cache: string

  before(async () => {
    const store = path.join(root, 'store')
    await importNixClosure(built.closure!, store)
    daemon = await startDaemon(store, '127.0.0.1:0', ['--http-listen', '127.0.0.1:0', '--http-compression', 'zstd'])
    cache = /Nix binary cache at (http:\/\/\S+)/.exec(daemon.log())![1]!
  })
  after(async () => {
    await daemon?.stop()
  })

  test('nix copy --from http://… substitutes the closure from zstd NARs compressed on the fly', async () => {
    const closure = built.closure!
    const served = parseNarInfo(await (await fetch(`${cache}/${hashPartOf(closure.top)}.narinfo`)).text(), '/nix/store')
    assert.equal(served.compression, 'zstd')
    assert.match(served.url, /^nar\/[0-9a-z]{32}-[0-9a-z]{52}\.nar\.zst$/)
    assert.deepEqual([served.fileHash, served.fileSize], [undefined, undefined])
    const target = new NixStore(path.join(root, 'from-daemon'))
    await nixOk('nix', ['copy', '--from', cache, '--no-check-sigs', '--to', target.url, closure.top])
    for (const e of closure.listing) assert.ok(NixStore.dump(path.join(target.root, e.path)).equals(NixStore.dump(e.path)), e.path)
  })
})

test('daemon --http-compression: a value it cannot serve, or without --http-listen, is one error line, exit 2', async () => {
  const store = path.join(root, 'never')
  for (const [args, re] of [
    [['--http-listen', '127.0.0.1:0', '--http-compression', 'bzip2'], /^error: --http-compression "bzip2": want one of none, zstd, xz, br$/],
    [['--http-compression', 'zstd'], /^error: --http-compression needs --http-listen$/],
  ] as const) {
    const r = await runCli(['daemon', '--store', store, ...args])
    assert.equal(r.code, 2, r.stderr)
    assertOneErrorLine(r.stderr, re)
  }
  assert.equal(fs.existsSync(store), false)
})

test('daemon --http-compression zstd without the zstd program: one error line at start, exit 1, nothing served', async () => {
  const store = path.join(root, 'never')
  const noPrograms = fs.mkdtempSync(path.join(root, 'empty-path-'))
  const r = await runCli(['daemon', '--store', store, '--listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--http-compression', 'zstd'], { env: { PATH: noPrograms } })
  assert.equal(r.code, 1, r.stderr)
  assertOneErrorLine(r.stderr, /^error: --http-compression zstd: zstd compression failed: the `zstd` program is not installed$/)
  assert.equal(fs.existsSync(store), false)
})

after(() => fs.rmSync(root, { recursive: true, force: true }))
