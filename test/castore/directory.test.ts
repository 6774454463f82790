import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { EMPTY_DIGEST, b3, toHex } from '../../src/castore/digest.js'
import { type Directory, directoryDigest, directorySize, validateDirectory } from '../../src/castore/directory.js'
import type { DirectoryNode, FileNode, SymlinkNode } from '../../src/castore/node.js'
import { encodeDirectory } from '../../src/castore/proto.js'

const n = (s: string) => Buffer.from(s)
const d = (name: string, digest = EMPTY_DIGEST, size = 0): DirectoryNode => ({ kind: 'directory', name: n(name), digest, size })
const f = (name: string, content = '', executable = false): FileNode => ({ kind: 'file', name: n(name), digest: b3(n(content)), size: content.length, executable })
const l = (name: string, target = 'x'): SymlinkNode => ({ kind: 'symlink', name: n(name), target: n(target) })
const dir = (p: Partial<Directory>): Directory => ({ directories: [], files: [], symlinks: [], ...p })

describe('Directory digests (SPEC 2.4, tvix values)', () => {
  test('empty directory', () => {
    assert.equal(encodeDirectory(dir({})).length, 0)
    assert.equal(toHex(directoryDigest(dir({}))), 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262')
  })

  test('nested directories, sizes omitted when zero', () => {
    const B = dir({ directories: [d('a')] })
    assert.equal(toHex(encodeDirectory(B)).slice(0, 14), '0a250a01611220')
    assert.equal(encodeDirectory(B).length, 39)
    assert.equal(toHex(directoryDigest(B)), '8701f4722d8dae7f2c40fa003331b8437a3825f9e1bfd3a77998c64cc226b9cc')
    assert.equal(directorySize(B), 1)
    const D = dir({ directories: [d('a'), d('b', directoryDigest(B), 1)] })
    assert.equal(toHex(directoryDigest(D)), '99922a5c1801805287a647af73bca0ed7352a5f7f373e54992795bcc4a235213')
    assert.equal(directorySize(D), 3)
  })

  test('the tree with a file, an executable and a symlink', () => {
    const sub = dir({ files: [f('a.txt', 'abc')] })
    assert.equal(toHex(directoryDigest(sub)), '8b43bce5456f4a1d8744af0634841e0d692107a2c42ba0b639a3d395cdd810f6')
    const root = dir({
      directories: [d('sub', directoryDigest(sub), 1)],
      files: [f('run.sh', '#!/bin/sh\necho hi\n', true)],
      symlinks: [l('link', 'run.sh')],
    })
    assert.equal(encodeDirectory(root).length, 107)
    assert.equal(toHex(directoryDigest(root)), '308a97e51de0275df17cca0873226c9a12e92b3e58f80dc55eb8ccf8bd3b66e6')
    assert.equal(directorySize(root), 4)
  })
})

describe('Directory validation (SPEC 2.1)', () => {
  const invalid: Array<[string, Directory, RegExp]> = [
    ['empty name', dir({ files: [f('')] }), /empty name/],
    ['"."', dir({ files: [f('.')] }), /"\."/],
    ['".."', dir({ directories: [d('..')] }), /"\.\."/],
    ['slash', dir({ symlinks: [l('a/b')] }), /"\/"/],
    ['NUL', dir({ files: [f('a\0')] }), /NUL/],
    ['256-byte name', dir({ files: [f('x'.repeat(256))] }), /longer than 255/],
    ['unsorted', dir({ files: [f('b'), f('a')] }), /not sorted/],
    ['duplicate within a list', dir({ files: [f('a'), f('a')] }), /not sorted or duplicated/],
    ['duplicate across lists', dir({ files: [f('a')], symlinks: [l('a')] }), /duplicate/],
    // Each list sorted on its own; a name of a later list is looked for in every earlier one, wherever it sorts there.
    ['duplicate of a directory in the symlinks, files between', dir({ directories: [d('m')], files: [f('a'), f('z')], symlinks: [l('b'), l('m')] }), /duplicate directory entry "m"/],
    ['duplicate of the last of many files', dir({ files: ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((x) => f(x)), symlinks: [l('g')] }), /duplicate directory entry "g"/],
    ['duplicate of the first of many files, in the directories', dir({ directories: [d('a')], files: ['a', 'b', 'c', 'd'].map((x) => f(x)) }), /duplicate directory entry "a"/],
    ['short digest', dir({ files: [{ ...f('a'), digest: new Uint8Array(31) }] }), /31-byte digest/],
    ['empty symlink target', dir({ symlinks: [l('a', '')] }), /empty symlink target/],
    ['symlink target with NUL', dir({ symlinks: [l('a', 'x\0')] }), /NUL/],
    ['4096-byte symlink target', dir({ symlinks: [l('a', 'x'.repeat(4096))] }), /longer than 4095/],
  ]
  for (const [name, bad, re] of invalid) test(`rejects ${name}`, () => assert.throws(() => validateDirectory(bad), re))

  test('accepts lists sorted independently and prefixes first', () => {
    validateDirectory(dir({ directories: [d('b')], symlinks: [l('a')] }))
    validateDirectory(dir({ files: [f('a'), f('a.b'), f('ab'), f('\xff')] }))
    validateDirectory(dir({ files: [f('x'.repeat(255))] }))
  })
})
