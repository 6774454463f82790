import { createHash } from 'node:crypto'
import { after, before } from 'node:test'
import { EMPTY_DIGEST, b3 } from '../../src/castore/digest.js'
import { type Directory, directoryDigest } from '../../src/castore/directory.js'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { CaHash, PathInfo } from '../../src/store/path-info.js'
import type { Store } from '../../src/store/store.js'
import { nar, regular, toks } from '../helpers/nar.js'

/* PathInfos and Directories the store and publish contracts put, right or wrong as each test needs. */

export const dirOf = (p: Partial<Directory>): Directory => ({ directories: [], files: [], symlinks: [], ...p })
export const dnode = (name: string, digest: Uint8Array, size: number) => ({ kind: 'directory' as const, name: Buffer.from(name), digest, size })

// SPEC 2.4 / 3.7: B = {a -> empty}, D = {a -> empty, b -> B}.
export const EMPTY = dirOf({})
export const B = dirOf({ directories: [dnode('a', EMPTY_DIGEST, 0)] })
export const D = dirOf({ directories: [dnode('a', EMPTY_DIGEST, 0), dnode('b', directoryDigest(B), 1)] })

/** SPEC 3.5: the PathInfo of `Hello World!` added as a file named hw (blob not included). */
export const PATHINFO_HW = Buffer.from(
  '0a4b12490a23697836796b6764726b346d3964666c307a6c343864306e7238386730327278712d6877' +
    '12205ca7815adcb484e9a136c11efe69c1d530176d549b5d18d038eb5280b4b3470c180c' +
    '1a49088001122003e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040' +
    '3222122003e7f63be30b065d78bcf615f5473545fdb4eb69aa416f43495b4e05cdfb8040',
  'hex',
)
export const HW_BASENAME = 'ix6ykgdrk4m9dfl0zl48d0nr88g02rxq-hw'

export const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest()
export const fnode = (name: string, content: string, size = Buffer.byteLength(content)) => ({
  kind: 'file' as const,
  name: Buffer.from(name),
  digest: b3(Buffer.from(content)),
  size,
  executable: false,
})

/** A PathInfo for `basename` with NAR metadata of a file holding `content` (right or wrong, as the test needs). */
export function fileInfo(basename: string, content: string, p: { size?: number; references?: string[]; ca?: { type: CaHash; digest: Uint8Array }; nar?: Buffer } = {}): PathInfo {
  const n = p.nar ?? nar(regular(content))
  const refs = p.references ?? []
  return {
    node: fnode(basename, content, p.size),
    references: refs.map((r) => nixbase32.decode(r.slice(0, 32))),
    narinfo: { narSize: n.length, narSha256: sha256(n), signatures: [], referenceNames: refs, ca: p.ca },
  }
}

/** A made-up (input-addressed) store path basename for `tag`. */
export const madeUp = (tag: string) => `${nixbase32.encode(sha256(tag).subarray(0, 20))}-${tag}`

/** A symlink PathInfo at a made-up path: needs no castore data at all. */
export function symlinkInfo(tag: string, target: string, references: string[] = []): PathInfo {
  const n = nar(toks('(', 'type', 'symlink', 'target', target, ')'))
  return {
    node: { kind: 'symlink', name: Buffer.from(madeUp(tag)), target: Buffer.from(target) },
    references: references.map((r) => nixbase32.decode(r.slice(0, 32))),
    narinfo: { narSize: n.length, narSha256: sha256(n), signatures: [], referenceNames: references },
  }
}

/** The digest a basename's PathInfo is stored under. */
export const digestOf = (basename: string) => nixbase32.decode(basename.slice(0, 32))

/** Opens the store under test before a suite's tests (handing it to `use`) and closes and cleans it up after them. */
export function storeForSuite(open: () => Promise<Store>, cleanup: () => Promise<void>, use: (store: Store) => void): void {
  let store: Store | undefined
  before(async () => use((store = await open())))
  after(async () => {
    await store?.close()
    await cleanup()
  })
}
