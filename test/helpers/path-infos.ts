import { createHash } from 'node:crypto'
import * as nixbase32 from '../../src/store/nixbase32.js'
import type { PathInfo } from '../../src/store/path-info.js'
import type { PathInfoService } from '../../src/store/path-info-service.js'

/**
 * Registers an input-addressed path named `name` (its hash derived from the
 * name) that refers to `refs`: a symlink, so no blob or Directory is
 * needed, which makes stores of thousands of paths with references quick
 * to fill through the API (tests and bench/referrers.ts).
 */
export async function putSyntheticPath(pathInfos: PathInfoService, name: string, refs: PathInfo[] = []): Promise<PathInfo> {
  return pathInfos.put(syntheticPath(name, refs))
}

/** The PathInfo putSyntheticPath puts; another `target` gives the same path with different content. */
export function syntheticPath(name: string, refs: PathInfo[] = [], target = '/dev/null'): PathInfo {
  const digest = createHash('sha256').update(name).digest().subarray(0, 20)
  return {
    node: { kind: 'symlink', name: Buffer.from(`${nixbase32.encode(digest)}-${name}`), target: Buffer.from(target) },
    references: refs.map((r) => nixbase32.decode(baseNameOf(r).slice(0, 32))),
    narinfo: { narSize: 0, narSha256: createHash('sha256').update(name).digest(), signatures: [], referenceNames: refs.map(baseNameOf) },
  }
}

export const baseNameOf = (info: PathInfo) => Buffer.from(info.node.name).toString('utf8')
