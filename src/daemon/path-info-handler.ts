import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { B3_LEN, toHex } from '../castore/digest.js'
import { invalidTargetReason } from '../castore/directory.js'
import type { Node } from '../castore/node.js'
import { decodeNode, encodeNode } from '../castore/proto.js'
import { decodePathInfo } from '../store/proto.js'
import { emptyMessage, getPathInfoRequest } from '../grpc/messages.js'
import { Status, StatusError } from '../grpc/status.js'
import { checkedNarTotals, DEFAULT_MAX_NAR_SIZE, NarSizeMemo, NarTooLargeError } from '../store/nar/size.js'
import * as nixbase32 from '../store/nixbase32.js'
import { DIGEST_LEN } from '../store/store-path.js'
import type { Store } from '../store/store.js'
import type { PathInfo } from '../store/path-info.js'
import { type Log, requireDigest, serverStream, unary } from './calls.js'
import type { PutWindow } from './put-window.js'
import { foundAndHeld, type RootsOf } from './temp-roots.js'
import { inWriteSession } from '../store/capabilities.js'
import { publishPathInfo } from '../ops/publish.js'

const NAR_CACHE_ENTRIES = 10_000

export interface PathInfoHandlerOptions {
  /** Largest NAR one CalculateNAR may render; DEFAULT_MAX_NAR_SIZE when unset. */
  maxNarSize?: number
  /** Aborted when the daemon stops: renders in flight end. */
  stopped?: AbortSignal
  /** Temp roots of the call's connection. */
  rootsOf?: RootsOf
  /** Small blob Puts not yet committed: committed before a PathInfo is admitted or a NAR rendered. */
  window?: PutWindow
}

/** tvix.store.v1.PathInfoService over a store (SPEC 3.4, 3.5). */
export function pathInfoHandler(store: Store, log: Log, opts: PathInfoHandlerOptions = {}): UntypedServiceImplementation {
  // NAR size and hash are pure functions of the (anonymous) root node.
  const narCache = new Map<string, { narSize: number; narSha256: Uint8Array }>()
  // NAR sizes per Directory: what lets a bomb of shared children be refused after a few reads.
  const sizes = new NarSizeMemo()
  const maxNarSize = opts.maxNarSize ?? DEFAULT_MAX_NAR_SIZE

  return {
    Get: unary('PathInfoService/Get', log, getPathInfoRequest.decode, async (req, signal, call) => {
      if (req.byOutputHash === undefined) throw new StatusError(Status.UNIMPLEMENTED, 'by_what is not set')
      const d = requireDigest(req.byOutputHash, DIGEST_LEN, 'by_output_hash')
      // A path an uploader found stored may be a reference of the PathInfo it puts next: a temp root keeps it.
      let info: PathInfo | undefined
      const found = () => store.pathInfos.get(d, { signal }).then((got) => (info = got) !== undefined)
      const roots = opts.rootsOf?.(call)
      await (roots ? foundAndHeld(roots, 'pathinfo', nixbase32.encode(d), found) : found())
      if (!info) throw new StatusError(Status.NOT_FOUND, `no PathInfo for ${nixbase32.encode(d)}`)
      return info
    }),

    // Admitted as every publish is (tree, sizes, references, CA; then no replacement), checked and
    // written in one write session, so the store's gc cannot sweep in between.
    Put: unary('PathInfoService/Put', log, decodePathInfo, async (info, signal) => {
      await opts.window?.flush()
      return inWriteSession(store, (store) => publishPathInfo(store, info, { signal }))
    }),

    CalculateNAR: unary('PathInfoService/CalculateNAR', log, decodeNode, async (node, cancelled) => {
      const root = validateRootNode(node)
      await opts.window?.flush()
      const key = toHex(encodeNode(root))
      let hit = narCache.get(key)
      if (!hit) {
        const signal = opts.stopped ? AbortSignal.any([cancelled, opts.stopped]) : cancelled
        try {
          hit = await checkedNarTotals(root, store, { maxNarSize, signal, memo: sizes })
        } catch (e) {
          if (e instanceof NarTooLargeError) throw new StatusError(Status.RESOURCE_EXHAUSTED, `refusing to render the NAR: ${e.message} (daemon --max-nar-size)`)
          throw e
        }
        if (narCache.size >= NAR_CACHE_ENTRIES) narCache.delete(narCache.keys().next().value!)
        narCache.set(key, hit)
      }
      return hit
    }),

    List: serverStream('PathInfoService/List', log, emptyMessage.decode, (_req, signal) => store.pathInfos.list({ signal })),
  }
}

/** The node with its name dropped (seed clients send one, tvix-2024 none); digests checked. */
function validateRootNode(node: Node): Node {
  if (node.kind === 'symlink') {
    const why = invalidTargetReason(node.target)
    if (why) throw new StatusError(Status.INVALID_ARGUMENT, why)
  } else if (node.digest.length !== B3_LEN) {
    throw new StatusError(Status.INVALID_ARGUMENT, `node digest has ${node.digest.length} bytes, want ${B3_LEN}`)
  }
  return { ...node, name: new Uint8Array(0) }
}
