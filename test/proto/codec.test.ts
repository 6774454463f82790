import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { b3, toHex } from '../../src/castore/digest.js'
import { encodeNode } from '../../src/castore/proto.js'
import { decodePathInfo, encodePathInfo } from '../../src/store/proto.js'
import { narInfoFields, renderNarInfo } from '../../src/store/narinfo.js'
import { validatePathInfo } from '../../src/store/path-info.js'

// SPEC 1.6: bytes tvix produces for the file `hw` ("Hello World!").
const PATHINFO_HW =
  '0a4b12490a23697836796b6764726b346d3964666c307a6c343864306e7238386730327278712d6877' +
  '12205ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c180c' +
  '1a490880011220' + '03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040' +
  '32221220' + '03e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040'

describe('protobuf codec', () => {
  test('anonymous file node bytes (CalculateNAR request)', () => {
    const node = { kind: 'file' as const, name: new Uint8Array(0), digest: b3(Buffer.from('Hello World!')), size: 12, executable: false }
    assert.equal(toHex(encodeNode(node)), '122412205ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c180c')
  })

  test('PathInfo decodes, validates and re-encodes to the same bytes', () => {
    const info = decodePathInfo(Buffer.from(PATHINFO_HW, 'hex'))
    assert.equal(validatePathInfo(info).name, 'hw')
    assert.equal(info.narinfo?.ca?.type, 0)
    assert.equal(toHex(encodePathInfo(info)), PATHINFO_HW)
  })

  test('PathInfo renders to the narinfo Nix writes (SPEC 6.3, minus Sig)', () => {
    const info = decodePathInfo(Buffer.from(PATHINFO_HW, 'hex'))
    assert.equal(
      renderNarInfo(narInfoFields(info, '/nix/store')),
      [
        'StorePath: /nix/store/ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw',
        'URL: nar/0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3.nar',
        'Compression: none',
        'FileHash: sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3',
        'FileSize: 128',
        'NarHash: sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3',
        'NarSize: 128',
        'References: ',
        'CA: fixed:r:sha256:0h40zg6hakjv951nyhdad7mv9za56m3za5gnpiw5s1hbwcxzdrq3',
        '',
      ].join('\n'),
    )
  })

  test('malformed bytes give a clear error', () => {
    assert.throws(() => decodePathInfo(Buffer.from('0aff', 'hex')), /malformed PathInfo/)
  })

  test('PathInfo validation rules (SPEC 3.5)', () => {
    const base = () => decodePathInfo(Buffer.from(PATHINFO_HW, 'hex'))
    const ref = Buffer.from('b867011e42d9828608fd80ba962a99b9bde94d8f', 'hex')
    const cases: Array<[string, (i: ReturnType<typeof base>) => void, RegExp]> = [
      ['short reference', (i) => i.references.push(new Uint8Array(19)), /reference 0 has 19 bytes/],
      ['missing narinfo', (i) => delete i.narinfo, /narinfo is missing/],
      ['reference without name', (i) => i.references.push(ref), /1 references but 0 reference names/],
      ['mismatched reference name', (i) => { i.references.push(ref); i.narinfo!.referenceNames.push('00bgd045z0d4icpbc2yyz4gx48ak44la-hw') }, /does not match/],
      ['short nar_sha256', (i) => (i.narinfo!.narSha256 = new Uint8Array(31)), /nar_sha256/],
      ['short signature', (i) => i.narinfo!.signatures.push({ name: 'k', data: new Uint8Array(63) }), /signature 0/],
      ['bad CA length', (i) => (i.narinfo!.ca = { type: 1, digest: new Uint8Array(32) }), /CA digest/],
      ['bad root name', (i) => (i.node = { ...i.node, name: Buffer.from('hw') }), /root node name/],
      ['short root digest', (i) => (i.node = { kind: 'file', name: i.node.name, digest: new Uint8Array(3), size: 1, executable: false }), /root node digest/],
    ]
    for (const [name, mutate, re] of cases) {
      const i = base()
      mutate(i)
      assert.throws(() => validatePathInfo(i), re, name)
    }
  })
})

describe('hand-written codec agrees with the generated @bufbuild/protobuf code', async () => {
  const { create, toBinary, fromBinary } = await import('@bufbuild/protobuf')
  const pb = await import('../../src/proto/gen/tvix/castore/protos/castore_pb.js')
  const spb = await import('../../src/proto/gen/tvix/store/protos/pathinfo_pb.js')
  const { rng } = await import('../helpers/trees.js')
  const { decodeDirectory, encodeDirectory } = await import('../../src/castore/proto.js')
  const r = rng(7)
  const bytes = (max: number) => Buffer.from(Array.from({ length: Math.floor(r() * max) }, () => Math.floor(r() * 256)))
  const big = () => (r() < 0.3 ? 0 : r() < 0.5 ? Math.floor(r() * 300) : Math.floor(r() * 2 ** 40))
  const node = () => ({ name: bytes(8), digest: bytes(33) })

  test('Directory: same bytes both ways on 300 random messages', () => {
    for (let i = 0; i < 300; i++) {
      const msg = create(pb.DirectorySchema, {
        directories: Array.from({ length: Math.floor(r() * 3) }, () => ({ ...node(), size: BigInt(big()) })),
        files: Array.from({ length: Math.floor(r() * 3) }, () => ({ ...node(), size: BigInt(big()), executable: r() < 0.5 })),
        symlinks: Array.from({ length: Math.floor(r() * 3) }, () => ({ name: bytes(8), target: bytes(8) })),
      })
      const ref = toBinary(pb.DirectorySchema, msg)
      const ours = decodeDirectory(ref)
      assert.deepEqual(Buffer.from(encodeDirectory(ours)), Buffer.from(ref))
      assert.deepEqual(Buffer.from(toBinary(pb.DirectorySchema, fromBinary(pb.DirectorySchema, encodeDirectory(ours)))), Buffer.from(ref))
    }
  })

  test('DirectoryEncoder: entries given in name order encode to the same bytes, and the same size, on 300 random messages', async () => {
    const { DirectoryEncoder } = await import('../../src/castore/proto.js')
    const { directorySize, entriesInOrder } = await import('../../src/castore/directory.js')
    const byName = (a: { name: Uint8Array }, b: { name: Uint8Array }) => Buffer.compare(a.name, b.name)
    for (let i = 0; i < 300; i++) {
      const msg = create(pb.DirectorySchema, {
        directories: Array.from({ length: Math.floor(r() * 4) }, (_, k) => ({ ...node(), name: Buffer.from(`d${k}`), size: BigInt(big()) })),
        files: Array.from({ length: Math.floor(r() * 4) }, (_, k) => ({ ...node(), name: Buffer.from(`f${k}`), size: BigInt(big()), executable: r() < 0.5 })),
        symlinks: Array.from({ length: Math.floor(r() * 4) }, (_, k) => ({ name: Buffer.from(`s${k}`), target: bytes(8) })),
      })
      for (const list of [msg.directories, msg.files, msg.symlinks]) list.sort(byName)
      const ref = toBinary(pb.DirectorySchema, msg)
      const dir = decodeDirectory(ref)
      const enc = new DirectoryEncoder()
      for (const e of entriesInOrder(dir)) enc.add(e)
      assert.deepEqual(Buffer.from(enc.finish()), Buffer.from(ref))
      assert.equal(enc.size, directorySize(dir))
    }
  })

  test('PathInfo: same bytes both ways on 300 random messages', () => {
    const str = () => bytes(12).toString('hex')
    for (let i = 0; i < 300; i++) {
      const kind = Math.floor(r() * 3)
      const nodeMsg =
        kind === 0
          ? { case: 'directory' as const, value: create(pb.DirectoryNodeSchema, { ...node(), size: BigInt(big()) }) }
          : kind === 1
            ? { case: 'file' as const, value: create(pb.FileNodeSchema, { ...node(), size: BigInt(big()), executable: r() < 0.5 }) }
            : { case: 'symlink' as const, value: create(pb.SymlinkNodeSchema, { name: bytes(8), target: bytes(8) }) }
      const msg = create(spb.PathInfoSchema, {
        node: { node: nodeMsg },
        references: Array.from({ length: Math.floor(r() * 3) }, () => bytes(21)),
        narinfo:
          r() < 0.1
            ? undefined
            : {
                narSize: BigInt(big()),
                narSha256: bytes(33),
                signatures: Array.from({ length: Math.floor(r() * 3) }, () => ({ name: str(), data: bytes(65) })),
                referenceNames: Array.from({ length: Math.floor(r() * 3) }, () => (r() < 0.2 ? '' : str())),
                deriver: r() < 0.5 ? { name: str(), digest: bytes(21) } : undefined,
                ca: r() < 0.5 ? { type: Math.floor(r() * 9), digest: bytes(65) } : undefined,
              },
      })
      const ref = toBinary(spb.PathInfoSchema, msg)
      const ours = decodePathInfo(ref)
      assert.deepEqual(Buffer.from(encodePathInfo(ours)), Buffer.from(ref), `message ${i}`)
    }
  })

  test('decoding tolerates explicit defaults and unknown fields, re-encoding drops them', () => {
    // FileNode{name:"a", executable:false (explicit 20 00), unknown field 9}
    const file = Buffer.from('0a01612000480a', 'hex')
    const dir = Buffer.concat([Buffer.from([0x12, file.length]), file])
    assert.equal(toHex(encodeDirectory(decodeDirectory(dir))), '12030a0161')
  })
})
