import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import * as nixbase32 from '../../src/store/nixbase32.js'
import { absolute, makeSourcePath, makeStorePath, parseBasename, parseStorePathArg } from '../../src/store/store-path.js'

const hex = (s: string) => Buffer.from(s, 'hex')

describe('store paths', () => {
  // SPEC 4.5, confirmed with Nix 2.8.
  test('source path of a NAR hash (nix-store --add)', () => {
    const p = makeSourcePath(hex('03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040'), 'hw')
    assert.equal(absolute(p), '/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw')
    assert.equal(Buffer.from(p.digest).toString('hex'), 'b867011e42d9828608fd80ba962a99b9bde94d8f')
  })

  test('empty directory', () => {
    const p = makeSourcePath(nixbase32.decode('0sjjj9z1dhilhpc8pq4154czrb79z9cm044jvn75kxcjv6v5l2m5'), 'empty')
    assert.equal(absolute(p), '/nix/store/9ljssglw74jabzzsqsl3lim4d5jgh4ya-empty')
  })

  test('text paths with references (builtins.toFile)', () => {
    const sha = (s: string) => createHash('sha256').update(s).digest()
    assert.equal(absolute(makeStorePath('text', sha('bar'), 'foo')), '/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-foo')
    const withref = 'see /nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw\n'
    assert.equal(
      absolute(makeStorePath('text:/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw', sha(withref), 'withref')),
      '/nix/store/bcf47ak9glxc5ra4mzi9wsmbmnlawy21-withref',
    )
  })

  test('name rules: 211 chars accepted, 212 rejected, leading dot ok', () => {
    const h = '00bgd045z0d4icpbc2yyz4gx48ak44la'
    assert.equal(parseBasename(`${h}-${'a'.repeat(211)}`).name.length, 211)
    assert.throws(() => parseBasename(`${h}-${'a'.repeat(212)}`), /longer than 211/)
    assert.equal(parseBasename(`${h}-.dotfile`).name, '.dotfile')
    for (const bad of ['a b', 'é', 'a/b', 'a:b', '']) assert.throws(() => parseBasename(`${h}-${bad}`))
    for (const good of ['A-Z_a.z+0=9?', '..', '.']) assert.equal(parseBasename(`${h}-${good}`).name, good)
  })

  test('basename parsing rejects bad hash parts', () => {
    assert.throws(() => parseBasename('foo'), /basename/)
    assert.throws(() => parseBasename('00bgd045z0d4icpbc2yyz4gx48ak44le-x'), /hash/)
    assert.throws(() => parseBasename('00bgd045z0d4icpbc2yyz4gx48ak44la_x'), /basename/)
  })

  test('splits store path arguments into path and sub-path', () => {
    const { path, sub } = parseStorePathArg('/nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw/a/./b/')
    assert.equal(path.name, 'hw')
    assert.deepEqual(sub, ['a', 'b'])
    assert.throws(() => parseStorePathArg('/tmp/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'), /not in the Nix store/)
    assert.equal(parseStorePathArg('/x/y/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw', '/x/y').path.name, 'hw')
  })
})



