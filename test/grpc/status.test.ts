import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Metadata, type ServiceError } from '@grpc/grpc-js'
import { openGrpcStore } from '../../src/backends/grpc/index.js'
import { openMemoryStore } from '../../src/backends/memory/index.js'
import { parseListen } from '../../src/daemon/listen.js'
import { type Daemon, startDaemon } from '../../src/daemon/server.js'
import * as E from '../../src/errors.js'
import { Status, fromStatus } from '../../src/grpc/status.js'
import type { Store } from '../../src/store/store.js'
import { syntheticPath } from '../helpers/path-infos.js'

const CLASSES: Array<[new (m: string) => E.StoreError, Status]> = [
  [E.InvalidInputError, Status.INVALID_ARGUMENT],
  [E.UsageError, Status.INVALID_ARGUMENT],
  [E.NotFoundError, Status.NOT_FOUND],
  [E.AlreadyExistsError, Status.ALREADY_EXISTS],
  [E.MissingDataError, Status.FAILED_PRECONDITION],
  [E.StillAliveError, Status.FAILED_PRECONDITION],
  [E.IntegrityError, Status.DATA_LOSS],
  [E.UnsupportedError, Status.UNIMPLEMENTED],
  [E.ConflictError, Status.ABORTED],
  [E.TimeoutError, Status.DEADLINE_EXCEEDED],
  [E.NoSpaceError, Status.RESOURCE_EXHAUSTED],
  [E.BackendError, Status.UNAVAILABLE],
]

describe('errors cross a real daemon as the class they were, with their message', () => {
  let dir: string
  let daemon: Daemon
  let client: Store
  /** What the store behind the daemon throws at the next PathInfo put. */
  let next: Error
  const logged: string[] = []

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-status-'))
    const inner = openMemoryStore()
    inner.pathInfos.put = async () => {
      throw next
    }
    daemon = await startDaemon(inner, parseListen(`unix:${path.join(dir, 'sock')}`), (l) => logged.push(l))
    client = openGrpcStore(`unix:${path.join(dir, 'sock')}`, daemon.url, inner.storeDir)
  })
  after(async () => {
    await client.close()
    await daemon.shutdown()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  /** The error the client gets, and the status code it came as. */
  async function crossing(e: Error): Promise<{ got: Error; code: Status }> {
    next = e
    const got = await client.pathInfos.put(syntheticPath('crossing')).then(
      () => assert.fail('the put succeeded'),
      (x: Error) => x,
    )
    return { got, code: (got.cause as ServiceError).code }
  }

  for (const [cls, status] of CLASSES) {
    test(`${cls.name} travels as ${Status[status]} and comes back as ${cls.name}`, async () => {
      const { got, code } = await crossing(new cls('the store says no'))
      assert.equal(Status[code], Status[status])
      assert.ok(got instanceof cls, `${got.constructor.name}: ${got.message}`)
      assert.match(got.message, /the store says no$/)
    })
  }

  test('a refusal reads as it does in-process: the message is the store\'s own', async () => {
    const { got } = await crossing(new E.AlreadyExistsError("path '/nix/store/x' is already in the store with different content"))
    assert.equal(got.message, "path '/nix/store/x' is already in the store with different content")
  })

  test('a backend failure is UNAVAILABLE and names the daemon; it was reached, so no "cannot reach"', async () => {
    const { got } = await crossing(new E.BackendError('cannot read /s/blobs/ab: EIO'))
    assert.equal(got.message, `the tvix-store daemon at ${daemon.url} failed: cannot read /s/blobs/ab: EIO`)
  })

  test('an error that is not ours is INTERNAL, a BackendError at the client, and logged by the daemon', async () => {
    const { got, code } = await crossing(new TypeError('x is not a function'))
    assert.equal(Status[code], 'INTERNAL')
    assert.ok(got instanceof E.BackendError)
    assert.match(got.message, /failed: INTERNAL: x is not a function$/)
    assert.match(logged.at(-1)!, /^PathInfoService\/Put failed: INTERNAL: x is not a function$/)
  })
})

describe('a status from another server (no tvix-store trailer) is read by its code', () => {
  const from = (code: Status, details: string) => fromStatus(Object.assign(new Error(details), { code, details, metadata: new Metadata() }), 'grpc+http://peer:1')

  test('each code that means one of our classes', () => {
    for (const [cls, status] of [
      [E.InvalidInputError, Status.INVALID_ARGUMENT],
      [E.NotFoundError, Status.NOT_FOUND],
      [E.AlreadyExistsError, Status.ALREADY_EXISTS],
      [E.MissingDataError, Status.FAILED_PRECONDITION],
      [E.IntegrityError, Status.DATA_LOSS],
      [E.UnsupportedError, Status.UNIMPLEMENTED],
      [E.ConflictError, Status.ABORTED],
    ] as const) {
      assert.ok(from(status, 'no') instanceof cls, Status[status])
    }
  })

  test('UNAVAILABLE without the trailer is a daemon not reached; other codes are backend failures that name theirs', () => {
    const unreachable = from(Status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED 127.0.0.1:1.')
    assert.ok(unreachable instanceof E.BackendError)
    assert.equal(unreachable.message, 'cannot reach the tvix-store daemon at grpc+http://peer:1: connect ECONNREFUSED 127.0.0.1:1')
    const exhausted = from(Status.RESOURCE_EXHAUSTED, 'too many transfers in progress')
    assert.ok(exhausted instanceof E.BackendError)
    assert.equal(exhausted.message, 'the tvix-store daemon at grpc+http://peer:1 failed: RESOURCE_EXHAUSTED: too many transfers in progress')
  })
})
