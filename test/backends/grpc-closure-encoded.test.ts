/**
 * GrpcDirectoryService.getClosureEncoded: a recursive Get left encoded
 * for a tree read ahead. Each Directory's bytes must hash to a digest a
 * Directory before it announced (then they are its canonical encoding);
 * another encoding of an announced Directory is answered canonically, and
 * anything else is refused. Against a stub of the one call it makes.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { GrpcDirectoryService } from '../../src/backends/grpc/directory.js'
import type { RpcClient } from '../../src/backends/grpc/rpc.js'
import { b3, toHex } from '../../src/castore/digest.js'
import { type Directory, directoryDigest } from '../../src/castore/directory.js'
import { encodeDirectory } from '../../src/castore/proto.js'
import { IntegrityError } from '../../src/errors.js'

const leaf: Directory = {
  directories: [],
  files: [{ kind: 'file', name: Buffer.from('a'), digest: b3(Buffer.from('a\n')), size: 2, executable: false }],
  symlinks: [{ kind: 'symlink', name: Buffer.from('l'), target: Buffer.from('a') }],
}
const root: Directory = {
  directories: [{ kind: 'directory', name: Buffer.from('sub'), digest: directoryDigest(leaf), size: 2 }],
  files: [],
  symlinks: [],
}

/** A service whose recursive Get answers `messages` as they are. */
function answering(messages: Uint8Array[]): GrpcDirectoryService {
  const rpc = {
    leanServerStreamBytes: async function* () {
      yield* messages
    },
    error: (e: unknown) => e as Error,
  }
  return new GrpcDirectoryService(rpc as unknown as RpcClient)
}

async function closure(svc: GrpcDirectoryService) {
  const got: Array<{ digest: string; bytes: string }> = []
  for await (const d of svc.getClosureEncoded(directoryDigest(root))) got.push({ digest: toHex(d.digest), bytes: Buffer.from(d.bytes).toString('hex') })
  return got
}

const canonical = (d: Directory) => ({ digest: toHex(directoryDigest(d)), bytes: Buffer.from(encodeDirectory(d)).toString('hex') })

test('canonical bytes pass as they came, each with its digest', async () => {
  assert.deepEqual(await closure(answering([encodeDirectory(root), encodeDirectory(leaf)])), [canonical(root), canonical(leaf)])
})

test('another encoding of an announced Directory (an unknown field added) is answered with its canonical bytes', async () => {
  // Field 15, varint 1: a field a newer sender might add, which decoding skips.
  const padded = Buffer.concat([encodeDirectory(leaf), Buffer.from([0x78, 0x01])])
  assert.deepEqual(await closure(answering([encodeDirectory(root), padded])), [canonical(root), canonical(leaf)])
})

test('a Directory nothing before it announced is refused, also as the first message', async () => {
  await assert.rejects(closure(answering([encodeDirectory(leaf)])), (e) => e instanceof IntegrityError && /nothing before it refers to/.test(e.message))
  const stranger: Directory = { ...leaf, files: [{ ...leaf.files[0]!, size: 3 }] }
  await assert.rejects(closure(answering([encodeDirectory(root), encodeDirectory(stranger)])), IntegrityError)
})

test('getClosure decodes the same closure and validates each Directory, which getClosureEncoded leaves to its reader', async () => {
  const got: Directory[] = []
  for await (const d of answering([encodeDirectory(root), encodeDirectory(leaf)]).getClosure(directoryDigest(root))) got.push(d)
  assert.deepEqual(got.map((d) => toHex(directoryDigest(d))), [canonical(root).digest, canonical(leaf).digest])
  // Entries out of order: announced by a parent that names its digest, so only validation refuses it.
  const unsorted: Directory = { ...leaf, files: [{ ...leaf.files[0]!, name: Buffer.from('b') }, leaf.files[0]!] }
  const parent: Directory = { ...root, directories: [{ ...root.directories[0]!, digest: directoryDigest(unsorted) }] }
  const messages = [encodeDirectory(parent), encodeDirectory(unsorted)]
  const svc = answering(messages)
  const encoded = []
  for await (const d of svc.getClosureEncoded(directoryDigest(parent))) encoded.push(d)
  assert.equal(encoded.length, 2)
  await assert.rejects(async () => {
    for await (const _ of answering(messages).getClosure(directoryDigest(parent))) void _
  }, /not sorted or duplicated/)
})
