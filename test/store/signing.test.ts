import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { GrpcPathInfoService } from '../../src/backends/grpc/path-info.js'
import type { RpcClient } from '../../src/backends/grpc/rpc.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { InvalidInputError, UnsupportedError } from '../../src/errors.js'
import { signPaths } from '../../src/ops/sign.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { PathInfo } from '../../src/store/path-info.js'
import { canAddSignatures } from '../../src/store/capabilities.js'
import {
  fingerprint,
  generateSecretKey,
  hasValidSignature,
  parsePublicKeys,
  parseSecretKey,
  publicKeyOf,
  renderPublicKey,
  renderSecretKey,
  signPathInfo,
} from '../../src/store/signing.js'
import type { Store } from '../../src/store/store.js'

/** The path of BINARY-CACHE.md's verified example (a Nix 2.8 narinfo and the fingerprint its Sig signs). */
function exampleTop(): PathInfo {
  const refs = ['0swhnqp5jxkks13vi0z39346j4084rx6-a-leaf', 'h45f136lfm2kjiwl5ijiy5bhlgpfncpb-ia-leaf']
  // Stored in the other order: the fingerprint sorts them.
  const referenceNames = [...refs].reverse()
  return {
    node: { kind: 'directory', name: Buffer.from('mbzlq37b3s75asz0sf7vdf7b868h144x-ia-top'), digest: new Uint8Array(32), size: 1 },
    references: referenceNames.map((n) => nixbase32.decode(n.slice(0, 32))),
    narinfo: { narSize: 1320, narSha256: nixbase32.decode('1cskc2f7zc3m50xpn0jajrjksbll9x9b9v0vr93lxmb1884w72f7'), signatures: [], referenceNames },
  }
}

describe('signing', () => {
  test("the fingerprint is Nix's (BINARY-CACHE.md's verified example)", () => {
    assert.equal(
      fingerprint(exampleTop(), '/nix/store'),
      '1;/nix/store/mbzlq37b3s75asz0sf7vdf7b868h144x-ia-top;sha256:1cskc2f7zc3m50xpn0jajrjksbll9x9b9v0vr93lxmb1884w72f7;1320;' +
        '/nix/store/0swhnqp5jxkks13vi0z39346j4084rx6-a-leaf,/nix/store/h45f136lfm2kjiwl5ijiy5bhlgpfncpb-ia-leaf',
    )
    const noRefs: PathInfo = { ...exampleTop(), references: [], narinfo: { ...exampleTop().narinfo!, referenceNames: [] } }
    assert.match(fingerprint(noRefs, '/nix/store'), /;1320;$/)
  })

  test('a signature verifies with its public key only, over this very path', () => {
    const key = generateSecretKey('k-1')
    const info = exampleTop()
    const signed: PathInfo = { ...info, narinfo: { ...info.narinfo!, signatures: [signPathInfo(info, key, '/nix/store')] } }
    const pub = parsePublicKeys(` ${renderPublicKey(publicKeyOf(key))}  other-1:${Buffer.alloc(32, 1).toString('base64')} `)
    assert.equal(pub.length, 2)
    assert.equal(hasValidSignature(signed, pub, '/nix/store'), true)
    // Same name, another key.
    assert.equal(hasValidSignature(signed, [publicKeyOf(generateSecretKey('k-1'))], '/nix/store'), false)
    // Another NAR size: another fingerprint.
    assert.equal(hasValidSignature({ ...signed, narinfo: { ...signed.narinfo!, narSize: 1321 } }, pub, '/nix/store'), false)
    assert.equal(hasValidSignature(signed, pub, '/gnu/store'), false)
  })

  test('bad keys are refused, naming what is wrong', () => {
    const bad: Array<[string, RegExp]> = [
      [`k-1:${Buffer.alloc(32, 7).toString('base64')}`, /secret key 'k-1' is not valid: 32 bytes, want 64/],
      [`:${Buffer.alloc(64, 7).toString('base64')}`, /secret key is corrupt: expected 'name:base64'/],
      ['no-colon', /secret key is corrupt: expected 'name:base64'/],
      ['k-1:', /secret key is corrupt: expected 'name:base64'/],
      ['k-1:not*base64!', /secret key 'k-1' is corrupt: invalid base64/],
      // Unpadded: Buffer.from would take it, Nix writes padding.
      [`k-1:${Buffer.alloc(64, 7).toString('base64').replace(/=+$/, '')}`, /invalid base64/],
    ]
    for (const [text, re] of bad) assert.throws(() => parseSecretKey(text), (e) => e instanceof InvalidInputError && re.test(e.message), text)
    assert.throws(() => parsePublicKeys(`k-1:${Buffer.alloc(64, 7).toString('base64')}`), /public key 'k-1' is not valid: 64 bytes, want 32/)
    assert.throws(() => generateSecretKey('a b'), /invalid key name/)
  })

  test('a secret key round-trips, and one whose public half is not its own is refused', () => {
    const key = generateSecretKey('k-1')
    assert.deepEqual(parseSecretKey(renderSecretKey(key) + '\n'), key)
    const other = generateSecretKey('k-1')
    const mixed = renderSecretKey({ ...key, publicKey: other.publicKey })
    assert.throws(() => parseSecretKey(mixed), (e) => e instanceof InvalidInputError && /public half does not belong/.test(e.message))
  })
})

test('sign is refused over gRPC (the tvix protocol cannot change a stored PathInfo), before anything is read', async () => {
  const store: Store = { ...openMemoryStore(), pathInfos: new GrpcPathInfoService({} as RpcClient) }
  assert.equal(canAddSignatures(store), false)
  await assert.rejects(
    signPaths(store, [], { key: generateSecretKey('k-1'), all: true }, { what: 'sign', storeName: 'grpc+http://[::1]:8000' }),
    (e) => e instanceof UnsupportedError && /sign needs a store that can add signatures to stored paths, and grpc\+http/.test(e.message),
  )
})
