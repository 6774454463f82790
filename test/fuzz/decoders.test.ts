/**
 * Seeded fuzzing of the in-process parsers (test/helpers/mutate.ts): valid
 * Directory, PathInfo, Node and request messages, NARs of the interop
 * trees and narinfos, each mutated thousands of times. Every outcome must
 * be a clean rejection (an InvalidInputError, a StoreError for narinfos)
 * or a correct acceptance: a message our codec accepts is read the same by
 * the generated @bufbuild/protobuf code (the reference), and a NAR the
 * strict reader accepts exports back to the very bytes it was given.
 * Replay a failure with TVIX_FUZZ_SEED; run longer with TVIX_FUZZ_ITERATIONS.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { DescMessage } from '@bufbuild/protobuf'
import { readAll } from '../../src/castore/blob-service.js'
import { decodeDirectory, decodeNode, encodeDirectory, encodeNode } from '../../src/castore/proto.js'
import { validateDirectory } from '../../src/castore/directory.js'
import { InvalidInputError, StoreError } from '../../src/errors.js'
import { getDirectoryRequest, statBlobRequest } from '../../src/grpc/messages.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importNar } from '../../src/ops/import-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import * as castorePb from '../../src/proto/gen/tvix/castore/protos/castore_pb.js'
import * as blobPb from '../../src/proto/gen/tvix/castore/protos/rpc_blobstore_pb.js'
import * as dirPb from '../../src/proto/gen/tvix/castore/protos/rpc_directory_pb.js'
import * as pathInfoPb from '../../src/proto/gen/tvix/store/protos/pathinfo_pb.js'
import { narInfoFields, parseNarInfo, pathInfoFromNarInfo, renderNarInfo } from '../../src/store/narinfo.js'
import { decodePathInfo, encodePathInfo } from '../../src/store/proto.js'
import type { Store } from '../../src/store/store.js'
import { type Format, fuzzIterations, fuzzLoop, fuzzSeed, referenceBytes } from '../helpers/mutate.js'
import { memoryStore } from '../helpers/ops.js'
import { type TREES, makeTree } from '../helpers/trees.js'

const SEED = fuzzSeed()
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-fuzz-decoders-'))
/** Small trees only: each case parses its input whole. */
const KINDS: Array<keyof typeof TREES> = ['empty-dir', 'single-file', 'executable', 'empty-file', 'top-symlink', 'mixed', 'odd-names', 'deep']

interface Inputs {
  nars: Buffer[]
  directories: Buffer[]
  pathInfos: Buffer[]
  nodes: Buffer[]
  narinfos: string[]
}
const inputs: Inputs = { nars: [], directories: [], pathInfos: [], nodes: [], narinfos: [] }
let store: Store

before(async () => {
  store = await memoryStore()
  for (const kind of KINDS) {
    const imported = await importPath(store, makeTree(root, kind))
    inputs.nars.push(await readAll(await exportNar(store, imported.storePath)))
    inputs.pathInfos.push(Buffer.from(encodePathInfo(imported.info)))
    inputs.nodes.push(Buffer.from(encodeNode(imported.info.node)))
    inputs.narinfos.push(renderNarInfo(narInfoFields(imported.info, store.storeDir)))
    if (kind === 'mixed') {
      // With every repeated and nested field set: a field sent twice must merge as protobuf says.
      const ni = imported.info.narinfo!
      const refs = ['a', 'b'].map((n, i) => ({ digest: Buffer.alloc(20, i + 1), name: `${'0'.repeat(31)}${i}-${n}` }))
      inputs.pathInfos.push(Buffer.from(encodePathInfo({
        ...imported.info,
        references: refs.map((r) => r.digest),
        narinfo: { ...ni, referenceNames: refs.map((r) => r.name), signatures: [{ name: 'k1', data: Buffer.alloc(64, 3) }], deriver: { name: 'd', digest: Buffer.alloc(20, 4) } },
      })))
    }
    if (imported.info.node.kind !== 'directory') continue
    for await (const d of store.directories.getClosure(imported.info.node.digest)) inputs.directories.push(Buffer.from(encodeDirectory(d)))
  }
})

after(async () => {
  await store.close()
  fs.rmSync(root, { recursive: true, force: true })
})

/** `iterations` mutants of `bases` through `check`, each a whole input mutated as `format`. */
function fuzz(what: string, seedOffset: number, iterations: number, bases: Array<Uint8Array | string>, format: Format, check: (bytes: Buffer) => unknown): Promise<{ accepted: number }> {
  return fuzzLoop(what, SEED + seedOffset, iterations, (m) => {
    const base = m.pick(bases)
    const { bytes, ops } = m.mutate(typeof base === 'string' ? Buffer.from(base) : base, format)
    return { input: bytes, ops, shown: bytes.toString('hex') }
  }, check)
}

/** Throws unless `e` is the decoder's clean rejection. */
function rejectedCleanly(e: unknown): false {
  if (e instanceof InvalidInputError && !/\n/.test(e.message)) return false
  throw e
}

/**
 * Our decoder against the generated code on `bytes`: if ours accepts, the
 * reference accepts too, and both re-encode to the same canonical bytes.
 * Ours may refuse more (a varint above 2^53, invalid UTF-8 in a string,
 * protobuf groups); never less.
 */
function agrees<T>(bytes: Buffer, ours: (b: Buffer) => T, encodeOurs: (v: T) => Uint8Array, schema: DescMessage): boolean {
  let value: T
  try {
    value = ours(bytes)
  } catch (e) {
    return rejectedCleanly(e)
  }
  const reference = referenceBytes(schema, bytes)
  if (reference === 'overlong tag') return true
  if (!Buffer.isBuffer(reference)) throw new Error(`our decoder accepted what the generated code refuses: ${(reference as { refused: string }).refused}`)
  assert.deepEqual(Buffer.from(encodeOurs(value)).toString('hex'), Buffer.from(reference).toString('hex'), 'our reading differs from the generated code\'s')
  return true
}

const CI_DECODES = fuzzIterations(3000)
const CI_NARS = fuzzIterations(1500)

describe(`in-process parsers on seeded mutants (TVIX_FUZZ_SEED=${SEED})`, () => {
  test(`Directory: ${CI_DECODES} mutants read as the generated code reads them; those that validate re-encode stably`, async () => {
    const r = await fuzz('Directory', 1, CI_DECODES, inputs.directories, 'protobuf', (b) => {
      if (!agrees(b, decodeDirectory, encodeDirectory, castorePb.DirectorySchema)) return false
      try {
        validateDirectory(decodeDirectory(b))
      } catch (e) {
        return rejectedCleanly(e)
      }
      return true
    })
    assert.ok(r.accepted > 0, 'some mutants stay valid Directories (or the mutator only breaks things)')
  })

  test(`PathInfo: ${CI_DECODES} mutants read as the generated code reads them`, async () => {
    await fuzz('PathInfo', 2, CI_DECODES, inputs.pathInfos, 'protobuf', (b) => agrees(b, decodePathInfo, encodePathInfo, pathInfoPb.PathInfoSchema))
  })

  test(`Node (CalculateNAR's request): ${CI_DECODES} mutants read as the generated code reads them`, async () => {
    await fuzz('Node', 3, CI_DECODES, inputs.nodes, 'protobuf', (b) => agrees(b, decodeNode, encodeNode, castorePb.NodeSchema))
  })

  test(`request messages (Stat, Get): ${CI_DECODES} mutants read as the generated code reads them`, async () => {
    const stat = statBlobRequest.encode({ digest: Buffer.alloc(32, 7), sendChunks: true, sendBao: false })
    const get = getDirectoryRequest.encode({ digest: Buffer.alloc(32, 9), recursive: true })
    await fuzz('StatBlobRequest', 4, CI_DECODES / 2, [stat], 'protobuf', (b) => agrees(b, statBlobRequest.decode, statBlobRequest.encode, blobPb.StatBlobRequestSchema))
    await fuzz('GetDirectoryRequest', 5, CI_DECODES / 2, [get], 'protobuf', (b) => agrees(b, getDirectoryRequest.decode, getDirectoryRequest.encode, dirPb.GetDirectoryRequestSchema))
  })

  test(`NAR: ${CI_NARS} mutants of the interop trees' NARs are refused, or export back to the same bytes`, async () => {
    const target = await memoryStore()
    try {
      const r = await fuzz('NAR', 6, CI_NARS, inputs.nars, 'nar', async (b) => {
        let storePath: string
        try {
          storePath = (await importNar(target, (async function* () { yield b })(), 'fuzz')).storePath
        } catch (e) {
          return rejectedCleanly(e)
        }
        const back = await readAll(await exportNar(target, storePath))
        assert.ok(back.equals(b), `accepted a NAR that exports as other bytes (${back.length} bytes, not ${b.length})`)
        return true
      })
      assert.ok(r.accepted > 0, 'some mutants stay valid NARs')
    } finally {
      await target.close()
    }
  })

  test(`narinfo: ${CI_DECODES} mutants are refused with one line, or read into a PathInfo`, async () => {
    const rootNode = { kind: 'symlink' as const, name: new Uint8Array(0), target: Buffer.from('x') }
    await fuzz('narinfo', 7, CI_DECODES, inputs.narinfos, 'text', (b) => {
      try {
        const fields = parseNarInfo(b.toString('utf8'), store.storeDir)
        pathInfoFromNarInfo(fields, rootNode, store.storeDir)
        return true
      } catch (e) {
        if (e instanceof StoreError && !/\n/.test(e.message)) return false
        throw e
      }
    })
  })
})
