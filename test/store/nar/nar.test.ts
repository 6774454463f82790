import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import { readAll } from '../../../src/castore/blob-service.js'
import { commitTreeStage, stageTree } from '../../../src/castore/tree-stage.js'
import { openMemoryStore } from '../../../src/backends/memory/index.js'
import { InvalidInputError } from '../../../src/errors.js'
import { ingestNar } from '../../../src/store/nar/ingest.js'
import { renderNar } from '../../../src/store/nar/render.js'
import { narSize } from '../../../src/store/nar/size.js'
import * as nixbase32 from '../../../src/store/nixbase32.js'
import { directory, entry, nar, regular, str, symlink, toks } from '../../helpers/nar.js'

const sha = (b: Uint8Array) => nixbase32.encode(createHash('sha256').update(b).digest())

async function roundTrip(bytes: Buffer, chunk = 7) {
  const store = openMemoryStore()
  const stage = stageTree(store)
  async function* src() {
    for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk)
  }
  const r = await ingestNar(src(), stage)
  await commitTreeStage(stage)
  const out = await readAll(renderNar(r.root, store))
  // The size computed from Directories alone, without rendering, matches the NAR's.
  assert.equal(await narSize(r.root, store), bytes.length)
  return { r, out, store }
}

describe('NAR encoding (SPEC 5.5 examples, from Nix)', () => {
  test('Hello World! file: 128 bytes, known hash', async () => {
    const bytes = nar(regular('Hello World!'))
    assert.equal(bytes.length, 128)
    assert.equal(sha(bytes), '0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3')
    const { r, out } = await roundTrip(bytes)
    assert.deepEqual(out, bytes)
    assert.equal(r.narSize, 128)
    assert.equal(nixbase32.encode(r.narSha256), '0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3')
  })

  test('empty directory, empty file, symlink, executable', async () => {
    const cases: Array<[Buffer, number, string?]> = [
      [nar(directory()), 96, '0sjjj9z1dhilhpc8pq4154czrb79z9cm044jvn75kxcjv6v5l2m5'],
      [nar(regular('')), 112, '0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3p'],
      [nar(symlink('/nix/store/somewhereelse')), 136, '1wcwacrb5q36hpsx1shk0dkm26hwbmqmgi0nm973h9jqkdz3jz89'],
      [nar(regular('x', true)), 152],
    ]
    for (const [bytes, size, hash] of cases) {
      assert.equal(bytes.length, size)
      if (hash) assert.equal(sha(bytes), hash)
      const { r, out } = await roundTrip(bytes, 3)
      assert.deepEqual(out, bytes)
      assert.equal(r.narSize, size)
    }
  })

  test('the tree of SPEC 2.4: 888 bytes, entries merged in name order', async () => {
    const bytes = nar(
      directory(
        entry('link', symlink('run.sh')),
        entry('run.sh', regular('#!/bin/sh\necho hi\n', true)),
        entry('sub', directory(entry('a.txt', regular('abc')))),
      ),
    )
    assert.equal(bytes.length, 888)
    assert.equal(sha(bytes), '1gas6kn20vrjmv80v7xyvlb4x2s4cm2g8yfygac3pyl1hsxa350q')
    const { r, out, store } = await roundTrip(bytes, 64)
    assert.deepEqual(out, bytes)
    assert.equal(Buffer.from(r.root.kind === 'directory' ? r.root.digest : []).toString('hex'), '308a97e51de0275df17cca0873226c9a12e92b3e58f80dc55eb8ccf8bd3b66e6')
    assert.equal(store.directories.dirs.size, 2)
  })
})

describe('NAR reader rejects malformed input', () => {
  const good = nar(directory(entry('a', regular('x')), entry('b', regular('y'))))
  const bad: Array<[string, Buffer, RegExp]> = [
    ['empty input', Buffer.alloc(0), /truncated/],
    ['bad magic', Buffer.concat([str('nix-archive-2'), regular('x')]), /not a NAR/],
    ['truncated in a token', good.subarray(0, 100), /truncated/],
    ['truncated in contents', nar(regular('hello world')).subarray(0, 100), /truncated/],
    ['missing final )', good.subarray(0, good.length - 16), /truncated/],
    ['trailing bytes', Buffer.concat([good, Buffer.alloc(8)]), /trailing/],
    ['unsorted entries', nar(directory(entry('b', regular('x')), entry('a', regular('y')))), /out of order/],
    ['duplicate entries', nar(directory(entry('a', regular('x')), entry('a', regular('y')))), /duplicate/],
    ['entry "."', nar(directory(entry('.', regular('x')))), /"\."/],
    ['entry ".."', nar(directory(entry('..', regular('x')))), /"\.\."/],
    ['entry with /', nar(directory(entry('a/b', regular('x')))), /"\/"/],
    ['entry with NUL', nar(directory(entry(Buffer.from('a\0b'), regular('x')))), /NUL/],
    ['empty entry name', nar(directory(entry('', regular('x')))), /empty name/],
    ['entry name over 255 bytes', nar(directory(entry('n'.repeat(256), regular('x')))), /longer than 255/],
    ['non-zero padding', Buffer.concat([str('nix-archive-1', { pad: [0, 0, 1] }), regular('x')]), /padding/],
    ['non-zero padding in contents', nar(toks('(', 'type', 'regular', 'contents', str('x', { pad: [0, 0, 0, 0, 0, 0, 9] }), ')')), /padding/],
    ['non-empty executable marker', nar(toks('(', 'type', 'regular', 'executable', 'x', 'contents', str('x'), ')')), /executable marker/],
    ['empty symlink target', nar(symlink('')), /empty symlink target/],
    ['symlink target with NUL', nar(symlink('a\0b')), /NUL/],
    ['unknown node type', nar(toks('(', 'type', 'fifo', ')')), /unknown node type/],
    ['unexpected token', nar(toks('(', 'type', 'regular', 'contentz', str('x'), ')')), /expected "contents"/],
    ['huge length', Buffer.concat([str('nix-archive-1'), str('('), str('type'), str('regular'), str('contents'), Buffer.from('ffffffffffffffff', 'hex')]), /too large/],
  ]
  for (const [name, bytes, re] of bad) {
    test(name, async () => {
      await assert.rejects(roundTrip(bytes), (e: Error) => {
        assert.ok(e instanceof InvalidInputError, `want InvalidInputError, got ${e}`)
        assert.match(e.message, /^invalid NAR: /)
        assert.match(e.message, re)
        return true
      })
    })
  }
})
