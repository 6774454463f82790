import type { UntypedServiceImplementation } from '@grpc/grpc-js'
import { B3_LEN, b3Display } from '../castore/digest.js'
import type { Directory } from '../castore/directory.js'
import { ClosureValidator } from '../castore/directory-service.js'
import type { Store } from '../store/store.js'
import { decodeDirectory } from '../proto/codec.js'
import { getDirectoryRequest } from '../grpc/messages.js'
import { Status, StatusError } from '../grpc/status.js'
import { clientStream, type Log, requireDigest, serverStream } from './calls.js'

/** More Directories than this in one Put stream are refused (memory bound per call). */
const MAX_DIRECTORIES_PER_PUT = 1_000_000

/** tvix.castore.v1.DirectoryService over any DirectoryService (SPEC 3.3). */
export function directoryHandler(store: Pick<Store, 'directories' | 'writeSession'>, log: Log): UntypedServiceImplementation {
  const { directories } = store
  return {
    Get: serverStream('DirectoryService/Get', log, getDirectoryRequest.decode, async function* (req) {
      const d = requireDigest(req.digest, B3_LEN)
      if (req.recursive) {
        // An absent root is an empty stream, as tvix (2024) answers.
        yield* directories.getClosure(d)
        return
      }
      const dir = await directories.get(d)
      if (!dir) throw new StatusError(Status.NOT_FOUND, `directory ${b3Display(d)} not found`)
      yield dir
    }),

    // A write session: children found stored stay stored until the parents are written.
    Put: clientStream('DirectoryService/Put', log, decodeDirectory, (stream) => store.writeSession(async () => {
      // Validate as the messages arrive, so a bad stream fails at its first bad message.
      const v = new ClosureValidator((d) => directories.get(d))
      const received: Directory[] = []
      for await (const dir of stream) {
        await v.add(dir)
        received.push(dir)
        if (received.length > MAX_DIRECTORIES_PER_PUT) {
          throw new StatusError(Status.RESOURCE_EXHAUSTED, `more than ${MAX_DIRECTORIES_PER_PUT} directories in one Put`)
        }
      }
      if (received.length === 0) throw new StatusError(Status.INVALID_ARGUMENT, 'no directories sent')
      v.finish()
      return directories.putClosure(received)
    })),
  }
}
