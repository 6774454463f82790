/**
 * LocalPathInfoService.list() does not hide a corrupt PathInfo: every
 * intact one comes out, then the corrupt one is the error. referrers()
 * still skips what it cannot use (stale index entries, corrupt referrers).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { openLocalStore } from '../../src/backends/local/index.js'
import { IntegrityError } from '../../src/errors.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { PathInfo } from '../../src/store/path-info.js'
import { baseNameOf, putSyntheticPath } from '../helpers/path-infos.js'

const hashOf = (i: PathInfo) => baseNameOf(i).slice(0, 32)

test('list() yields every intact PathInfo, then fails on the corrupt one naming it', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-list-'))
  try {
    const store = await openLocalStore(root)
    const leaf = await putSyntheticPath(store.pathInfos, 'leaf')
    const infos = [leaf, await putSyntheticPath(store.pathInfos, 'one', [leaf]), await putSyntheticPath(store.pathInfos, 'two', [leaf])]
    const sorted = infos.map(hashOf).sort()
    // The middle one in listing order holds garbage; a stray file is no PathInfo at all.
    const bad = sorted[1]!
    const file = path.join(root, 'pathinfo', bad)
    fs.chmodSync(file, 0o644)
    fs.writeFileSync(file, 'garbage')
    fs.writeFileSync(path.join(root, 'pathinfo', 'README'), 'not a PathInfo')

    const listed: string[] = []
    await assert.rejects(
      (async () => {
        for await (const info of store.pathInfos.list()) listed.push(hashOf(info))
      })(),
      (e) => e instanceof IntegrityError && new RegExp(`^the stored PathInfo of ${bad} is corrupt \\(.*\\); \`verify --repair\` removes it$`).test(e.message),
    )
    assert.deepEqual(listed, [sorted[0], sorted[2]])

    // The referrers of leaf: the intact referrer; the corrupt one is skipped, as before.
    const referrers = await store.pathInfos.referrers(nixbase32.decode(hashOf(leaf)))
    const expected = infos.filter((i) => i !== leaf && hashOf(i) !== bad).map(hashOf)
    assert.deepEqual(referrers.map(hashOf), expected)
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
})
