import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { create, createFileRegistry, fromBinary } from '@bufbuild/protobuf'
import type { DescMessage, MessageInitShape, Registry } from '@bufbuild/protobuf'
import { type FileDescriptorProto, FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt'
import * as grpc from '@grpc/grpc-js'
import { daemonDescriptors } from '../../src/daemon/descriptors.js'
import {
  HEALTH_SERVICE_NAME,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthService,
  ServingStatus,
  addHealthService,
  healthServiceDefinition,
} from '../../src/daemon/health.js'
import {
  REFLECTION_V1ALPHA_SERVICE_NAME,
  REFLECTION_V1_SERVICE_NAME,
  addReflectionService,
  reflectionV1ServiceDefinition,
  reflectionV1alphaServiceDefinition,
} from '../../src/daemon/reflection.js'
import { HealthCheckRequestSchema } from '../../src/proto/gen/grpc/health/v1/health_pb.js'
import * as v1 from '../../src/proto/gen/grpc/reflection/v1/reflection_pb.js'
import * as v1alpha from '../../src/proto/gen/grpc/reflection/v1alpha/reflection_pb.js'

const TVIX_SERVICES = ['tvix.castore.v1.BlobService', 'tvix.castore.v1.DirectoryService', 'tvix.store.v1.PathInfoService']
const ALL_SERVICES = [...TVIX_SERVICES, HEALTH_SERVICE_NAME, REFLECTION_V1_SERVICE_NAME, REFLECTION_V1ALPHA_SERVICE_NAME]

// --- clients over the real socket ------------------------------------------

interface HealthClient extends grpc.Client {
  check(
    req: HealthCheckRequest,
    cb: (err: grpc.ServiceError | null, res?: HealthCheckResponse) => void,
  ): grpc.ClientUnaryCall
  watch(req: HealthCheckRequest): grpc.ClientReadableStream<HealthCheckResponse>
}

interface ReflectionClient<Req, Res> extends grpc.Client {
  serverReflectionInfo(): grpc.ClientDuplexStream<Req, Res>
}

const HealthClientCtor = grpc.makeGenericClientConstructor(healthServiceDefinition, 'Health')
const ReflectionV1Ctor = grpc.makeGenericClientConstructor(reflectionV1ServiceDefinition, 'ServerReflection')
const ReflectionV1alphaCtor = grpc.makeGenericClientConstructor(reflectionV1alphaServiceDefinition, 'ServerReflection')

/** Either version's message schemas; the tests below run against both. */
interface Version {
  readonly name: string
  readonly ctor: grpc.ServiceClientConstructor
  readonly request: DescMessage
}
const VERSIONS: Version[] = [
  { name: 'v1', ctor: ReflectionV1Ctor, request: v1.ServerReflectionRequestSchema },
  { name: 'v1alpha', ctor: ReflectionV1alphaCtor, request: v1alpha.ServerReflectionRequestSchema },
]

/** The fields both versions' responses share, typed once. */
type AnyResponse = v1.ServerReflectionResponse | v1alpha.ServerReflectionResponse
type RequestInit = MessageInitShape<typeof v1.ServerReflectionRequestSchema>

/** One ServerReflectionInfo stream; ask() sends a request and awaits its answer. */
class ReflectionSession {
  private readonly stream: grpc.ClientDuplexStream<unknown, AnyResponse>
  private readonly waiting: { resolve: (r: AnyResponse) => void; reject: (e: Error) => void }[] = []
  private failed: Error | undefined

  constructor(
    client: ReflectionClient<unknown, AnyResponse>,
    private readonly version: Version,
  ) {
    this.stream = client.serverReflectionInfo()
    this.stream.on('data', (res: AnyResponse) => this.waiting.shift()?.resolve(res))
    this.stream.on('error', (e: Error) => {
      this.failed = e
      for (const w of this.waiting.splice(0)) w.reject(e)
    })
  }

  ask(init: RequestInit): Promise<AnyResponse> {
    if (this.failed) return Promise.reject(this.failed)
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      this.stream.write(create(this.version.request, init as never))
    })
  }

  end(): Promise<void> {
    return new Promise((resolve) => {
      this.stream.on('status', () => resolve())
      this.stream.end()
    })
  }
}

function fileDescriptors(res: AnyResponse): FileDescriptorProto[] {
  assert.equal(
    res.messageResponse.case,
    'fileDescriptorResponse',
    `expected files, got ${res.messageResponse.case}: ${JSON.stringify(res.messageResponse.value)}`,
  )
  const bytes = (res.messageResponse.value as v1.FileDescriptorResponse).fileDescriptorProto
  const files = bytes.map((b) => fromBinary(FileDescriptorProtoSchema, b))
  const names = files.map((f) => f.name)
  assert.equal(new Set(names).size, names.length, `a file was sent twice in one response: ${names}`)
  return files
}

/** Files in dependency order (imports first), as createFileRegistry(FileDescriptorSet) needs them. */
function topoSort(files: Map<string, FileDescriptorProto>): FileDescriptorProto[] {
  const out: FileDescriptorProto[] = []
  const done = new Set<string>()
  const visit = (name: string): void => {
    if (done.has(name)) return
    done.add(name)
    const f = files.get(name)
    assert.ok(f, `missing descriptor for ${name}`)
    for (const dep of f.dependency) visit(dep)
    out.push(f)
  }
  for (const name of files.keys()) visit(name)
  return out
}

/**
 * What a reflection client (grpcurl, grpcui, Postman) does: ask for the
 * file declaring `symbol`, then fetch every import it names by file name
 * until the graph is closed, and build a registry from the result.
 */
async function resolveSymbol(session: ReflectionSession, symbol: string): Promise<Registry> {
  const first = fileDescriptors(await session.ask({ messageRequest: { case: 'fileContainingSymbol', value: symbol } }))
  // The first response alone is already closed under imports.
  const fromFirst = new Map(first.map((f) => [f.name, f]))
  createFileRegistry(create(FileDescriptorSetSchema, { file: topoSort(fromFirst) }))

  const files = new Map<string, FileDescriptorProto>()
  const queue = [first[0]]
  const asked = new Set<string>()
  while (queue.length > 0) {
    const f = queue.shift()!
    files.set(f.name, f)
    for (const dep of f.dependency) {
      if (asked.has(dep)) continue
      asked.add(dep)
      const got = fileDescriptors(await session.ask({ messageRequest: { case: 'fileByFilename', value: dep } }))
      assert.equal(got[0].name, dep, 'file_by_filename answers with the requested file first')
      queue.push(got[0])
    }
  }
  return createFileRegistry(create(FileDescriptorSetSchema, { file: topoSort(files) }))
}

function methodTypes(registry: Registry, service: string): Record<string, [string, string, string]> {
  const desc = registry.getService(service)
  assert.ok(desc, `service ${service} resolves`)
  return Object.fromEntries(desc.methods.map((m) => [m.name, [m.input.typeName, m.output.typeName, m.methodKind]]))
}

// --- server ----------------------------------------------------------------

async function startServer(): Promise<{ server: grpc.Server; address: string; health: HealthService }> {
  const server = new grpc.Server()
  const health = addHealthService(server, TVIX_SERVICES)
  addReflectionService(server, [...TVIX_SERVICES, HEALTH_SERVICE_NAME])
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  )
  return { server, address: `127.0.0.1:${port}`, health }
}

function check(client: HealthClient, service: string): Promise<HealthCheckResponse> {
  return new Promise((resolve, reject) =>
    client.check(create(HealthCheckRequestSchema, { service }), (err, res) => (err ? reject(err) : resolve(res!))),
  )
}

/** Collects Watch messages; next() awaits the following one. */
function watch(client: HealthClient, service: string) {
  const call = client.watch(create(HealthCheckRequestSchema, { service }))
  const seen: ServingStatus[] = []
  const waiters: ((s: ServingStatus) => void)[] = []
  call.on('data', (r: HealthCheckResponse) => {
    const w = waiters.shift()
    if (w) w(r.status)
    else seen.push(r.status)
  })
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve))
  call.on('error', () => {})
  return {
    call,
    status,
    next(): Promise<ServingStatus> {
      const s = seen.shift()
      if (s !== undefined) return Promise.resolve(s)
      return new Promise((resolve) => waiters.push(resolve))
    },
  }
}

// --- tests -----------------------------------------------------------------

describe('descriptor pool', () => {
  test('holds all our files under their import names, with imports intact', () => {
    const deps = Object.fromEntries([...daemonDescriptors.files.values()].map((f) => [f.name, f.dependencies]))
    assert.deepEqual(deps, {
      'tvix/castore/protos/castore.proto': [],
      'tvix/castore/protos/rpc_blobstore.proto': [],
      'tvix/castore/protos/rpc_directory.proto': ['tvix/castore/protos/castore.proto'],
      'tvix/store/protos/pathinfo.proto': ['tvix/castore/protos/castore.proto'],
      'tvix/store/protos/rpc_pathinfo.proto': ['tvix/castore/protos/castore.proto', 'tvix/store/protos/pathinfo.proto'],
      'grpc/health/v1/health.proto': [],
      'grpc/reflection/v1/reflection.proto': [],
      'grpc/reflection/v1alpha/reflection.proto': [],
      'tvix_store/ext/v1/batch_blobs.proto': [],
    })
    for (const f of daemonDescriptors.files.values()) {
      const decoded = fromBinary(FileDescriptorProtoSchema, f.bytes)
      assert.equal(decoded.name, f.name)
      assert.deepEqual(decoded.dependency, f.dependencies)
    }
  })

  test('indexes services, methods, messages, nested messages and enums', () => {
    const expect: Record<string, string> = {
      'tvix.castore.v1.BlobService': 'tvix/castore/protos/rpc_blobstore.proto',
      'tvix.castore.v1.BlobService.Read': 'tvix/castore/protos/rpc_blobstore.proto',
      'tvix_store.ext.v1.BatchBlobService.PutBlobs': 'tvix_store/ext/v1/batch_blobs.proto',
      'tvix_store.ext.v1.ReadBlobsResponse.State': 'tvix_store/ext/v1/batch_blobs.proto',
      'tvix.castore.v1.StatBlobResponse.ChunkMeta': 'tvix/castore/protos/rpc_blobstore.proto',
      'tvix.castore.v1.DirectoryService.Put': 'tvix/castore/protos/rpc_directory.proto',
      'tvix.castore.v1.Node': 'tvix/castore/protos/castore.proto',
      'tvix.store.v1.PathInfoService': 'tvix/store/protos/rpc_pathinfo.proto',
      'tvix.store.v1.PathInfoService.CalculateNAR': 'tvix/store/protos/rpc_pathinfo.proto',
      'tvix.store.v1.PathInfo': 'tvix/store/protos/pathinfo.proto',
      'tvix.store.v1.NARInfo.CA.Hash': 'tvix/store/protos/pathinfo.proto',
      'tvix.store.v1.NARInfo.Signature': 'tvix/store/protos/pathinfo.proto',
      'grpc.health.v1.Health.Watch': 'grpc/health/v1/health.proto',
      'grpc.health.v1.HealthCheckResponse.ServingStatus': 'grpc/health/v1/health.proto',
      'grpc.reflection.v1.ServerReflection': 'grpc/reflection/v1/reflection.proto',
      'grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo': 'grpc/reflection/v1alpha/reflection.proto',
    }
    for (const [symbol, file] of Object.entries(expect)) {
      assert.equal(daemonDescriptors.fileContainingSymbol(symbol)?.name, file, symbol)
    }
    assert.equal(daemonDescriptors.fileContainingSymbol('tvix.store.v1.Nope'), undefined)
  })

  test('a closure lists the file first and every transitive import once', () => {
    assert.deepEqual(
      daemonDescriptors.closure('tvix/store/protos/rpc_pathinfo.proto')?.map((f) => f.name),
      ['tvix/store/protos/rpc_pathinfo.proto', 'tvix/castore/protos/castore.proto', 'tvix/store/protos/pathinfo.proto'],
    )
    assert.equal(daemonDescriptors.closure('nope.proto'), undefined)
  })

  test('addReflectionService refuses a service it has no descriptor for', () => {
    assert.throws(() => addReflectionService(new grpc.Server(), ['tvix.store.v1.Nope']), /no descriptor for service tvix\.store\.v1\.Nope/)
  })
})

describe('health and reflection over a real socket', () => {
  let server: grpc.Server
  let health: HealthService
  let healthClient: HealthClient
  const reflectionClients: grpc.Client[] = []
  const sessions = new Map<string, ReflectionSession>()

  before(async () => {
    const started = await startServer()
    server = started.server
    health = started.health
    healthClient = new HealthClientCtor(started.address, grpc.credentials.createInsecure()) as unknown as HealthClient
    for (const version of VERSIONS) {
      const client = new version.ctor(started.address, grpc.credentials.createInsecure())
      reflectionClients.push(client)
      sessions.set(version.name, new ReflectionSession(client as unknown as ReflectionClient<unknown, AnyResponse>, version))
    }
  })

  after(async () => {
    await Promise.all([...sessions.values()].map((s) => s.end()))
    healthClient?.close()
    for (const c of reflectionClients) c.close()
    health?.shutdown()
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()))
  })

  for (const version of VERSIONS) {
    describe(`reflection ${version.name}`, () => {
      const session = () => sessions.get(version.name)!

      test('list_services names every registered service', async () => {
        const res = await session().ask({ host: 'localhost', messageRequest: { case: 'listServices', value: '*' } })
        assert.equal(res.messageResponse.case, 'listServicesResponse')
        const names = (res.messageResponse.value as v1.ListServiceResponse).service.map((s) => s.name)
        assert.deepEqual([...names].sort(), [...ALL_SERVICES].sort())
        assert.equal(res.validHost, 'localhost')
        assert.equal(res.originalRequest?.messageRequest.case, 'listServices')
      })

      test('tvix.store.v1.PathInfoService resolves with all its imports', async () => {
        const registry = await resolveSymbol(session(), 'tvix.store.v1.PathInfoService')
        assert.deepEqual(methodTypes(registry, 'tvix.store.v1.PathInfoService'), {
          Get: ['tvix.store.v1.GetPathInfoRequest', 'tvix.store.v1.PathInfo', 'unary'],
          Put: ['tvix.store.v1.PathInfo', 'tvix.store.v1.PathInfo', 'unary'],
          CalculateNAR: ['tvix.castore.v1.Node', 'tvix.store.v1.CalculateNARResponse', 'unary'],
          List: ['tvix.store.v1.ListPathInfoRequest', 'tvix.store.v1.PathInfo', 'server_streaming'],
        })
        // Types across files resolve too.
        const pathInfo = registry.getMessage('tvix.store.v1.PathInfo')
        assert.equal(pathInfo?.field.node.message?.typeName, 'tvix.castore.v1.Node')
        assert.equal(registry.getMessage('tvix.castore.v1.Node')?.field.directory.message?.typeName, 'tvix.castore.v1.DirectoryNode')
        assert.ok(registry.getEnum('tvix.store.v1.NARInfo.CA.Hash'))
      })

      test('tvix.castore.v1.BlobService and DirectoryService resolve', async () => {
        assert.deepEqual(methodTypes(await resolveSymbol(session(), 'tvix.castore.v1.BlobService'), 'tvix.castore.v1.BlobService'), {
          Stat: ['tvix.castore.v1.StatBlobRequest', 'tvix.castore.v1.StatBlobResponse', 'unary'],
          Read: ['tvix.castore.v1.ReadBlobRequest', 'tvix.castore.v1.BlobChunk', 'server_streaming'],
          Put: ['tvix.castore.v1.BlobChunk', 'tvix.castore.v1.PutBlobResponse', 'client_streaming'],
        })
        const dirs = await resolveSymbol(session(), 'tvix.castore.v1.DirectoryService')
        assert.deepEqual(methodTypes(dirs, 'tvix.castore.v1.DirectoryService'), {
          Get: ['tvix.castore.v1.GetDirectoryRequest', 'tvix.castore.v1.Directory', 'server_streaming'],
          Put: ['tvix.castore.v1.Directory', 'tvix.castore.v1.PutDirectoryResponse', 'client_streaming'],
        })
        assert.equal(dirs.getMessage('tvix.castore.v1.Directory')?.field.files.message?.typeName, 'tvix.castore.v1.FileNode')
      })

      test('grpc.health.v1.Health and the reflection services resolve', async () => {
        assert.deepEqual(methodTypes(await resolveSymbol(session(), HEALTH_SERVICE_NAME), HEALTH_SERVICE_NAME), {
          Check: ['grpc.health.v1.HealthCheckRequest', 'grpc.health.v1.HealthCheckResponse', 'unary'],
          Watch: ['grpc.health.v1.HealthCheckRequest', 'grpc.health.v1.HealthCheckResponse', 'server_streaming'],
        })
        for (const name of [REFLECTION_V1_SERVICE_NAME, REFLECTION_V1ALPHA_SERVICE_NAME]) {
          const types = methodTypes(await resolveSymbol(session(), name), name)
          assert.equal(types.ServerReflectionInfo?.[2], 'bidi_streaming')
        }
      })

      test('a method or nested symbol finds its file', async () => {
        const byMethod = fileDescriptors(
          await session().ask({ messageRequest: { case: 'fileContainingSymbol', value: 'tvix.store.v1.PathInfoService.CalculateNAR' } }),
        )
        assert.equal(byMethod[0].name, 'tvix/store/protos/rpc_pathinfo.proto')
        const byEnum = fileDescriptors(
          await session().ask({ messageRequest: { case: 'fileContainingSymbol', value: 'tvix.store.v1.NARInfo.CA.Hash' } }),
        )
        assert.deepEqual(
          byEnum.map((f) => f.name),
          ['tvix/store/protos/pathinfo.proto', 'tvix/castore/protos/castore.proto'],
        )
      })

      test('unknown symbols and files are NOT_FOUND, extensions UNIMPLEMENTED; the stream stays usable', async () => {
        const unknown = await session().ask({
          host: 'h:1',
          messageRequest: { case: 'fileContainingSymbol', value: 'tvix.store.v1.NoSuchService' },
        })
        assert.equal(unknown.messageResponse.case, 'errorResponse')
        assert.equal((unknown.messageResponse.value as v1.ErrorResponse).errorCode, 5)
        assert.equal(unknown.validHost, 'h:1')
        assert.equal(unknown.originalRequest?.messageRequest.value, 'tvix.store.v1.NoSuchService')

        const noFile = await session().ask({ messageRequest: { case: 'fileByFilename', value: 'castore.proto' } })
        assert.equal((noFile.messageResponse.value as v1.ErrorResponse).errorCode, 5)

        const ext = await session().ask({
          messageRequest: { case: 'fileContainingExtension', value: { containingType: 'tvix.store.v1.PathInfo', extensionNumber: 100 } },
        })
        assert.equal((ext.messageResponse.value as v1.ErrorResponse).errorCode, 12)
        const extNums = await session().ask({
          messageRequest: { case: 'allExtensionNumbersOfType', value: 'tvix.store.v1.PathInfo' },
        })
        assert.equal((extNums.messageResponse.value as v1.ErrorResponse).errorCode, 12)

        const again = fileDescriptors(
          await session().ask({ messageRequest: { case: 'fileByFilename', value: 'tvix/castore/protos/castore.proto' } }),
        )
        assert.deepEqual(
          again.map((f) => f.name),
          ['tvix/castore/protos/castore.proto'],
        )
      })
    })
  }

  describe('health', () => {
    test('Check: SERVING for the server and registered services, NOT_FOUND otherwise', async () => {
      assert.equal((await check(healthClient, '')).status, ServingStatus.SERVING)
      for (const name of TVIX_SERVICES) assert.equal((await check(healthClient, name)).status, ServingStatus.SERVING)
      await assert.rejects(check(healthClient, 'tvix.store.v1.Nope'), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND)
    })

    test('Watch: current status, then each change', async () => {
      const w = watch(healthClient, 'tvix.store.v1.PathInfoService')
      const whole = watch(healthClient, '')
      assert.equal(await w.next(), ServingStatus.SERVING)
      assert.equal(await whole.next(), ServingStatus.SERVING)
      health.setServing(false)
      assert.equal(await w.next(), ServingStatus.NOT_SERVING)
      assert.equal(await whole.next(), ServingStatus.NOT_SERVING)
      assert.equal((await check(healthClient, '')).status, ServingStatus.NOT_SERVING)
      health.setServing(true)
      assert.equal(await w.next(), ServingStatus.SERVING)
      assert.equal(await whole.next(), ServingStatus.SERVING)
      w.call.cancel()
      whole.call.cancel()
      assert.equal((await w.status).code, grpc.status.CANCELLED)
    })

    test('Watch: SERVICE_UNKNOWN for an unknown name, kept open until it becomes known', async () => {
      const w = watch(healthClient, 'tvix.later.v1.Service')
      assert.equal(await w.next(), ServingStatus.SERVICE_UNKNOWN)
      health.setServing(true, 'tvix.later.v1.Service')
      assert.equal(await w.next(), ServingStatus.SERVING)
      w.call.cancel()
      await w.status
    })
  })
})

describe('health shutdown', () => {
  test('shutdown(): NOT_SERVING for good, open Watch calls end, tryShutdown completes', async () => {
    const { server, address, health } = await startServer()
    const client = new HealthClientCtor(address, grpc.credentials.createInsecure()) as unknown as HealthClient
    try {
      const w = watch(client, '')
      assert.equal(await w.next(), ServingStatus.SERVING)
      health.shutdown()
      assert.equal(await w.next(), ServingStatus.NOT_SERVING)
      assert.equal((await w.status).code, grpc.status.OK)
      assert.equal((await check(client, 'tvix.castore.v1.BlobService')).status, ServingStatus.NOT_SERVING)
      health.setServing(true)
      assert.equal((await check(client, '')).status, ServingStatus.NOT_SERVING)
      // A Watch that starts now gets the final status and ends at once.
      const late = watch(client, '')
      assert.equal(await late.next(), ServingStatus.NOT_SERVING)
      assert.equal((await late.status).code, grpc.status.OK)
    } finally {
      client.close()
    }
    await new Promise<void>((resolve, reject) => server.tryShutdown((err) => (err ? reject(err) : resolve())))
  })
})
