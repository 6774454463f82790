import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { AlreadyExistsError, InvalidInputError } from '../../src/errors.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { PathInfo } from '../../src/store/path-info.js'
import { baseNameOf, syntheticPath } from '../helpers/path-infos.js'
import { canon, freshStore, type OpenStore } from './harness.js'

/** The store path digest a PathInfo is keyed by. */
export const digestOf = (i: PathInfo) => nixbase32.decode(baseNameOf(i).slice(0, 32))

/**
 * What every PathInfoService must do (store/path-info-service.ts), with
 * symlink PathInfos: they need no blob or Directory, and refer only to
 * paths put before them, so no admission rule (tests/contracts/publish.ts)
 * is what decides.
 */
export function describePathInfoService(name: string, open: OpenStore): void {
  describe(`${name}: PathInfoService contract`, () => {
    const store = freshStore(open)

    test('put returns what it stored; get gives it back; an absent path is undefined', async () => {
      const { pathInfos } = store()
      const leaf = syntheticPath('get-leaf')
      assert.deepEqual(canon(await pathInfos.put(leaf)), canon(leaf))
      const top = syntheticPath('get-top', [leaf])
      await pathInfos.put(top)
      assert.deepEqual(canon(await pathInfos.get(digestOf(leaf))), canon(leaf))
      assert.deepEqual(canon(await pathInfos.get(digestOf(top))), canon(top))
      assert.equal(await pathInfos.get(digestOf(syntheticPath('never-put'))), undefined)
    })

    test('a malformed store path digest is an InvalidInputError, not an absent path', async () => {
      const { pathInfos } = store()
      for (const d of [new Uint8Array(19), new Uint8Array(32), new Uint8Array(0)]) await assert.rejects(pathInfos.get(d), InvalidInputError)
    })

    test('list gives every stored PathInfo once', async () => {
      const { pathInfos } = store()
      const before: PathInfo[] = []
      for await (const i of pathInfos.list()) before.push(i)
      const added = ['list-a', 'list-b', 'list-c'].map((n) => syntheticPath(n))
      for (const i of added) await pathInfos.put(i)
      const after: PathInfo[] = []
      for await (const i of pathInfos.list()) after.push(i)
      const names = (infos: PathInfo[]) => infos.map(baseNameOf).sort()
      assert.deepEqual(names(after), names([...before, ...added]))
      const byName = new Map(after.map((i) => [baseNameOf(i), i]))
      for (const i of added) assert.deepEqual(canon(byName.get(baseNameOf(i))), canon(i))
    })

    test('an invalid PathInfo is an InvalidInputError and is not stored', async () => {
      const { pathInfos } = store()
      const notAPath = syntheticPath('invalid-name')
      notAPath.node = { ...notAPath.node, name: Buffer.from('not-a-store-path') }
      await assert.rejects(pathInfos.put(notAPath), InvalidInputError)
      const shortHash = syntheticPath('invalid-nar-hash')
      shortHash.narinfo!.narSha256 = new Uint8Array(31)
      await assert.rejects(pathInfos.put(shortHash), InvalidInputError)
      assert.equal(await pathInfos.get(digestOf(shortHash)), undefined)
      const leaf = syntheticPath('dup-leaf')
      await pathInfos.put(leaf)
      const dup = syntheticPath('dup-refs', [leaf, leaf])
      await assert.rejects(pathInfos.put(dup), InvalidInputError)
      assert.equal(await pathInfos.get(digestOf(dup)), undefined)
    })

    test('never replaced: the same content again returns what is stored (signatures not merged); different content is an AlreadyExistsError', async () => {
      const { pathInfos } = store()
      const leaf = syntheticPath('replace-leaf')
      await pathInfos.put(leaf)
      const stored = syntheticPath('replace-me')
      await pathInfos.put(stored)
      const signed = syntheticPath('replace-me')
      signed.narinfo!.signatures.push({ name: 'cache.example.org-1', data: new Uint8Array(64).fill(7) })
      assert.deepEqual(canon(await pathInfos.put(signed)), canon(stored))

      const otherTarget = syntheticPath('replace-me', [], '/other/target')
      const otherNar = syntheticPath('replace-me')
      otherNar.narinfo!.narSha256 = new Uint8Array(32).fill(1)
      const otherSize = syntheticPath('replace-me')
      otherSize.narinfo!.narSize = 1
      const moreRefs = syntheticPath('replace-me', [leaf])
      for (const other of [otherTarget, otherNar, otherSize, moreRefs]) await assert.rejects(pathInfos.put(other), AlreadyExistsError)
      assert.deepEqual(canon(await pathInfos.get(digestOf(stored))), canon(stored))
    })

    test('of concurrent puts of one path with different content, exactly one is stored', async () => {
      const { pathInfos } = store()
      for (let round = 0; round < 8; round++) {
        const puts = ['a', 'b', 'c'].map((t) => pathInfos.put(syntheticPath(`race-${round}`, [], `/target-${t}`)))
        const results = await Promise.allSettled(puts)
        const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
        assert.equal(won.length, 1, `round ${round}: ${won.length} puts succeeded`)
        for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof AlreadyExistsError, String(r.reason))
        assert.deepEqual(canon(await pathInfos.get(digestOf(won[0]!))), canon(won[0]))
      }
    })
  })
}
