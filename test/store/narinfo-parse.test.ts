import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, it } from 'node:test'
import { nixMissing, runNix } from '../helpers/nix.js'
import { parseNarInfo, renderNarInfo } from '../../src/store/narinfo.js'

// The narinfo Nix 2.8 wrote in ../shared/BINARY-CACHE.md's example (signature verified there).
const NIX_WRITTEN = `StorePath: /nix/store/mbzlq37b3s75asz0sf7vdf7b868h144x-ia-top
URL: nar/1cskc2f7zc3m50xpn0jajrjksbll9x9b9v0vr93lxmb1884w72f7.nar
Compression: none
FileHash: sha256:1cskc2f7zc3m50xpn0jajrjksbll9x9b9v0vr93lxmb1884w72f7
FileSize: 1320
NarHash: sha256:1cskc2f7zc3m50xpn0jajrjksbll9x9b9v0vr93lxmb1884w72f7
NarSize: 1320
References: 0swhnqp5jxkks13vi0z39346j4084rx6-a-leaf h45f136lfm2kjiwl5ijiy5bhlgpfncpb-ia-leaf
Sig: test-cache-1:TOhq9bBEaYi4X6CwM3eiWXL8Wi08nOpoVaDfRZPayrV2tiN2qlBTNB1s8JjGJnVTs5j+0PMGHxvdKfCnVMdGCg==
`

describe('parseNarInfo', () => {
  it('reads what Nix writes and renders it back byte for byte', () => {
    const f = parseNarInfo(NIX_WRITTEN, '/nix/store')
    assert.equal(f.narSize, 1320)
    assert.deepEqual(f.references, ['0swhnqp5jxkks13vi0z39346j4084rx6-a-leaf', 'h45f136lfm2kjiwl5ijiy5bhlgpfncpb-ia-leaf'])
    assert.equal(renderNarInfo(f), NIX_WRITTEN)
  })

  it('takes a missing Compression as bzip2 and ignores unknown keys', () => {
    const f = parseNarInfo(NIX_WRITTEN.replace('Compression: none\n', 'System: x86_64-linux\n'), '/nix/store')
    assert.equal(f.compression, 'bzip2')
  })

  for (const [what, text] of [
    ['no final newline', NIX_WRITTEN.slice(0, -1)],
    ['a blank line', NIX_WRITTEN + '\n'],
    ['no NarHash', NIX_WRITTEN.replace(/NarHash: .*\n/, '')],
    ['NarSize 0', NIX_WRITTEN.replace('NarSize: 1320', 'NarSize: 0')],
    ['another store dir', NIX_WRITTEN.replace('StorePath: /nix/store', 'StorePath: /gnu/store')],
    ['a bad reference', NIX_WRITTEN.replace('0swhnqp5jxkks13vi0z39346j4084rx6-a-leaf', 'nope')],
  ] as const) {
    it(`refuses ${what}`, () => assert.throws(() => parseNarInfo(text, '/nix/store'), /corrupt narinfo|invalid store path/))
  }
})

const noNix = nixMissing()
if (noNix) console.log(`skipping the narinfo References cases against Nix: ${noNix}`)

// How Nix 2.8 itself reads References lines (`nix path-info --store file://…` of each variant), and we alike.
describe('References as Nix 2.8 reads them', { skip: noNix }, () => {
  const [a, b] = ['0swhnqp5jxkks13vi0z39346j4084rx6-a-leaf', 'h45f136lfm2kjiwl5ijiy5bhlgpfncpb-ia-leaf']
  const refs = /References: .*\n/
  const cases: Array<[string, string]> = [
    ['two spaces between names', `References: ${a}  ${b}\n`],
    ['spaces only', 'References:   \n'],
    ['a trailing space', `References: ${a} \n`],
    ['an empty line, then names', `References: \nReferences: ${a}\n`],
    ['names twice', `References: ${a}\nReferences: ${b}\n`],
  ]
  for (const [what, lines] of cases) {
    it(what, async () => {
      const text = NIX_WRITTEN.replace(refs, lines).replace(/Sig: .*\n/, '')
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'narinfo-refs-'))
      try {
        fs.writeFileSync(path.join(dir, 'nix-cache-info'), 'StoreDir: /nix/store\n')
        fs.writeFileSync(path.join(dir, 'mbzlq37b3s75asz0sf7vdf7b868h144x.narinfo'), text)
        const nix = await runNix('nix', ['path-info', '--json', '--store', `file://${dir}`, '/nix/store/mbzlq37b3s75asz0sf7vdf7b868h144x-ia-top'])
        if (nix.code !== 0) {
          assert.match(nix.stderr, /is corrupt/)
          assert.throws(() => parseNarInfo(text, '/nix/store'), /corrupt narinfo/)
          return
        }
        const theirs = (JSON.parse(nix.stdout.toString()) as Array<{ references: string[] }>)[0]!.references.map((r) => path.basename(r)).sort()
        assert.deepEqual([...new Set(parseNarInfo(text, '/nix/store').references)].sort(), theirs)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  }
})
