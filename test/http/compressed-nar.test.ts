/**
 * `--http-compression`: the cache in-process, over a memory store, serving
 * NARs compressed as they are sent. The narinfo names the compressed file
 * (no FileHash/FileSize: unknown before the stream is compressed), the bytes
 * decompress to the NAR its NarHash names, the uncompressed URL keeps
 * working, and a client that goes away stops the compression program.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { after, before, describe, test } from 'node:test'
import { decompressor } from '../../src/codecs/index.js'
import { type TcpAddress, startHttpCache } from '../../src/http/server.js'
import { importPath } from '../../src/ops/import-paths.js'
import { parseNarInfo, parseSha256 } from '../../src/store/narinfo.js'
import type { Store } from '../../src/store/store.js'
import { memoryStore } from '../helpers/ops.js'
import { blockedFor } from '../helpers/spawn.js'
import { randomBytes } from '../helpers/trees.js'

const LOOPBACK: TcpAddress = { kind: 'tcp', host: '127.0.0.1', port: 0 }

/** Pids of this process's children running `name`. */
function childrenNamed(name: string): number[] {
  const pids: number[] = []
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').trim()
      const [, comm, rest] = /^\d+ \((.*)\) (.*)$/.exec(stat)!
      if (comm === name && Number(rest!.split(' ')[1]) === process.pid) pids.push(Number(pid))
    } catch {}
  }
  return pids
}

describe('HTTP binary cache with --http-compression', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-http-compressed-'))
  let store: Store
  let hashPart: string

  before(async () => {
    const tree = path.join(root, 'tree')
    fs.mkdirSync(tree)
    // Compressible text and incompressible bytes, several MiB: many compressor blocks and pipe buffers.
    fs.writeFileSync(path.join(tree, 'text'), Buffer.alloc(3 << 20, 'a line of text that compresses\n'))
    fs.writeFileSync(path.join(tree, 'random'), randomBytes(2 << 20, 7))
    store = await memoryStore()
    hashPart = path.basename((await importPath(store, tree)).storePath).slice(0, 32)
  })
  after(async () => {
    await store.close()
    fs.rmSync(root, { recursive: true, force: true })
  })

  for (const compression of ['zstd', 'xz', 'br'] as const) {
    test(`${compression}: the narinfo names the compressed NAR, whose bytes decompress to the NAR; the .nar URL still works`, async () => {
      const cache = await startHttpCache(store, LOOPBACK, (l) => assert.fail(`logged: ${l}`), { priority: 40, compression })
      try {
        const info = parseNarInfo(await (await fetch(`${cache.url}/${hashPart}.narinfo`)).text(), store.storeDir)
        const ext = { zstd: '.nar.zst', xz: '.nar.xz', br: '.nar.br' }[compression]
        assert.equal(info.compression, compression)
        assert.ok(info.url.startsWith(`nar/${hashPart}-`) && info.url.endsWith(ext), info.url)
        assert.deepEqual([info.fileHash, info.fileSize], [undefined, undefined])
        const res = await fetch(`${cache.url}/${info.url}`)
        assert.equal(res.status, 200)
        assert.equal(res.headers.get('content-length'), null)
        const packed = Buffer.from(await res.arrayBuffer())
        assert.ok(packed.length < info.narSize / 2, `${compression}: ${packed.length} bytes for a ${info.narSize}-byte NAR`)
        const nar = await buffer(Readable.from([packed]).pipe(decompressor(compression)))
        assert.equal(nar.length, info.narSize)
        assert.deepEqual(createHash('sha256').update(nar).digest(), Buffer.from(parseSha256(info.narHash)))
        // The uncompressed NAR of the same path, as narinfos cached before the flag changed name it.
        const plain = await fetch(`${cache.url}/${info.url.slice(0, -ext.length + '.nar'.length)}`)
        assert.ok(Buffer.from(await plain.arrayBuffer()).equals(nar))
        const head = await fetch(`${cache.url}/${info.url}`, { method: 'HEAD' })
        assert.deepEqual([head.status, await head.text()], [200, ''])
        // Another compression than the one served is not made on request.
        const other = compression === 'xz' ? '.nar.zst' : '.nar.xz'
        assert.equal((await fetch(`${cache.url}/${info.url.slice(0, -ext.length)}${other}`)).status, 404)
      } finally {
        await cache.shutdown()
      }
    })
  }

  test('a client that goes away mid-NAR stops the compression program, unlogged', async () => {
    const logs: string[] = []
    const cache = await startHttpCache(store, LOOPBACK, (l) => logs.push(l), { priority: 40, compression: 'xz' })
    try {
      const info = parseNarInfo(await (await fetch(`${cache.url}/${hashPart}.narinfo`)).text(), store.storeDir)
      // xz's first output comes long before the end of 5 MiB of NAR: it is still running then.
      const running = await new Promise<number[]>((resolve) => {
        const req = http.get(`${cache.url}/${info.url}`, (res) => {
          res.on('error', () => {})
          res.once('data', () => {
            const pids = childrenNamed('xz')
            req.destroy()
            resolve(pids)
          })
        })
        req.on('error', () => {})
      })
      assert.equal(running.length, 1, 'one xz runs for the response')
      // Killed once the response closes. Left alive, it would wait for input forever: judged by its CPU, not a clock.
      const gone = (async () => {
        while (childrenNamed('xz').length > 0) await new Promise((r) => setTimeout(r, 20))
      })()
      assert.equal(await blockedFor(running[0]!, 30_000, gone), false, 'xz was left running, waiting for input that never comes')
      assert.deepEqual(logs, [])
    } finally {
      // A failure above must not leave the test process waiting on a program it started.
      for (const pid of childrenNamed('xz')) process.kill(pid, 'SIGKILL')
      await cache.shutdown()
    }
  })
})
