import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { B3_LEN, b3, b3Display, toHex } from '../castore/digest.js'
import { ClosureValidator, requireServableBytes, requireServableDirectory, walkDirectories } from '../castore/directory-service.js'
import type { Directory } from '../castore/directory.js'
import type { Store } from '../store/store.js'
import { childDirectoryDigests, decodeDirectory, directoryEntryCount } from '../castore/proto.js'
import { getDirectoryRequest } from '../grpc/messages.js'
import { Status, StatusError } from '../grpc/status.js'
import { cancelledError, clientStream, FramedAnswer, type Log, requireDigest, serverStream } from './calls.js'
import type { PutWindow } from './put-window.js'
import { foundAndHeld, type RootsOf } from './temp-roots.js'
import { type Transfers, UNLIMITED } from './transfers.js'
import { inWriteSession } from '../store/capabilities.js'
import { cooperate } from '../util/cooperate.js'

/** Bytes of encoded Directories a recursive Get gathers and writes at once. */
const FRAMED_DIRECTORY_BYTES = 1 << 20

/** More Directories than this in one Put stream are refused (memory bound per call). */
const MAX_DIRECTORIES_PER_PUT = 1_000_000

/**
 * A Directory too large for one message (stored before the limit existed)
 * fails the call with a reason, and a log line, instead of grpc-js's
 * silent RESOURCE_EXHAUSTED.
 */
function servable<T extends Directory | Uint8Array>(dir: T): T {
  try {
    if (dir instanceof Uint8Array) requireServableBytes(dir)
    else requireServableDirectory(dir)
  } catch (e) {
    throw new StatusError(Status.FAILED_PRECONDITION, `cannot send ${(e as Error).message}`)
  }
  return dir
}

/**
 * tvix.castore.v1.DirectoryService over any DirectoryService (SPEC 3.3).
 * A Directory Put with more than `maxEntries` entries is refused before it
 * is decoded: 4 MiB of short names hold 100,000 entries, which took the
 * daemon from 85 to 283 MiB to put, read back and render.
 */
export function directoryHandler(
  store: Store,
  log: Log,
  transfers: Transfers = UNLIMITED,
  rootsOf: RootsOf = () => undefined,
  window?: PutWindow,
  maxEntries = Infinity,
): UntypedServiceImplementation {
  const { directories } = store
  return {
    Get: serverStream('DirectoryService/Get', log, getDirectoryRequest.decode, async function* (req, signal, call) {
      const d = requireDigest(req.digest, B3_LEN)
      // Stored bytes are sent as they are where the store keeps them: a wide
      // Directory decoded costs ~8× its bytes, and 16 Gets at once of one of
      // 90,000 entries took the daemon past 400 MiB.
      const getEncoded = directories.getEncoded?.bind(directories)
      if (req.recursive) {
        // An absent root is an empty stream, as tvix (2024) answers.
        if (!getEncoded) {
          for await (const dir of directories.getClosure(d, { signal })) yield servable(dir)
          return
        }
        // Framed together, up to FRAMED_DIRECTORY_BYTES a write: written one at a time, each
        // Directory waited for the write before it (grpc-js), ~8 ms apart on a loaded machine,
        // and a client's walk in NAR order needs most of them before its first file.
        let held: Uint8Array[] = []
        let bytes = 0
        try {
          for await (const dir of walkDirectories(d, (x) => getEncoded(x, { signal }), childDirectoryDigests, signal)) {
            held.push(servable(dir))
            bytes += dir.length
            if (bytes >= FRAMED_DIRECTORY_BYTES) {
              yield FramedAnswer.of(held)
              held = []
              bytes = 0
            }
          }
        } catch (e) {
          // What was read before a failure goes out before the status, as a Directory at a time did.
          if (held.length > 0) yield FramedAnswer.of(held)
          throw e
        }
        if (held.length > 0) yield FramedAnswer.of(held)
        return
      }
      // An uploader that finds a Directory stored does not send it: a temp root keeps it (and its tree).
      let dir: Directory | Uint8Array | undefined
      const found = () => (getEncoded ? getEncoded(d, { signal }) : directories.get(d, { signal })).then((got) => (dir = got) !== undefined)
      const roots = rootsOf(call)
      await (roots ? foundAndHeld(roots, 'dir', toHex(d), found) : found())
      if (!dir) throw new StatusError(Status.NOT_FOUND, `directory ${b3Display(d)} not found`)
      yield servable(dir)
    }, transfers),

    // A write session: children found stored stay stored until the parents are written.
    Put: clientStream('DirectoryService/Put', log, (raw) => raw, (stream, signal, call) => inWriteSession(store, async ({ blobs, directories }) => {
      // Blobs put before are committed first: sizes are checked against them, and nothing stored names an uncommitted blob.
      await window?.flush()
      // Validated as the messages arrive (a bad stream fails at its first bad
      // message) and spilled to the stage: memory per Directory is a digest
      // and a size, whatever the Directories weigh.
      // File sizes are checked against blobs already stored (absent ones wait for the PathInfo).
      const v = new ClosureValidator((d) => directories.get(d, { signal }), blobs.size && ((d) => blobs.size!(d, { signal })))
      const stage = directories.stage({ signal })
      try {
        let count = 0
        const checkpoint = cooperate(signal)
        for await (const raw of stream) {
          if (++count > MAX_DIRECTORIES_PER_PUT) {
            throw new StatusError(Status.RESOURCE_EXHAUSTED, `more than ${MAX_DIRECTORIES_PER_PUT} directories in one Put`)
          }
          // Canonical bytes hash to their digest: a Directory sent again is known before it is decoded.
          if (!v.repeat(b3(raw))) {
            const entries = directoryEntryCount(raw)
            if (entries > maxEntries) throw new StatusError(Status.RESOURCE_EXHAUSTED, `a directory with ${entries} entries is over --max-directory-entries (${maxEntries})`)
            const { digest, bytes, fresh } = await v.accept(decodeDirectory(raw))
            if (fresh) await stage.put(digest, bytes, { signal })
          }
          // Between messages the client had already sent, let other calls run (every few ms, not
          // after each: a turn of the event loop per Directory cost an import a wait per folder).
          if (checkpoint.due()) await checkpoint()
        }
        // An empty stream is refused by finish() as in-process stores refuse it: one message everywhere.
        const root = v.finish()
        if (signal.aborted) throw cancelledError()
        // Temp-rooted, then committed (a root on a name of nothing keeps nothing): the tree stays until
        // the client's PathInfo refers to it, and no sweep between the two can take it.
        const roots = rootsOf(call)
        if (roots) await (roots.holdAll ? roots.holdAll('dir', [toHex(root)]) : roots.holdIf('dir', toHex(root), async () => true))
        await stage.commit({ signal })
        return root
      } catch (e) {
        await stage.abort()
        throw e
      }
    }), transfers),
  }
}
