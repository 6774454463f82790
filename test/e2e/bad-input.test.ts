import assert from 'node:assert/strict'
import { Client, credentials, status as Status } from '@grpc/grpc-js'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import {
  CLI_CASES,
  CORRUPT_CASES,
  type CorruptCase,
  type CorruptGrpcCase,
  type Damage,
  GRPC_CASES,
  GRPC_CONTROLS,
  type GrpcMethod,
  NAR_CASES,
  SEED_PATH,
  type StatusName,
} from '../corpus/cases.js'
import { GRPC_DIR, SEED, grpcCorpus } from '../corpus/make-grpc.js'
import { NAR_DIR, narCorpus } from '../corpus/make-nars.js'
import { type CliResult, REPO, runCli } from '../helpers/cli.js'
import { type RunningDaemon, startDaemon } from '../helpers/daemon.js'
import { importNarInProcess } from '../helpers/ops.js'
import { snapshot } from '../helpers/snapshot.js'
import { openLocalStore } from '../../src/backends/local/index.js'
import { verifyStore } from '../../src/backends/local/verify.js'
import { StoreError } from '../../src/errors.js'

/**
 * The bad-input corpus (test/corpus/cases.ts) against real stores: the
 * built CLI on a local store, and a real daemon over a unix socket. Every
 * case must fail with a clear error and leave the store as it was.
 */

const CORPUS = path.join(REPO, 'test/corpus')
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-bad-input-'))
/** The seeded store every case starts from (copied, never used directly). */
const pristine = path.join(root, 'pristine')
const input = path.join(root, 'input')
let caseCounter = 0

/**
 * The store holds exactly what it held before the case: the same files
 * with the same sizes, no temp files left behind, and `verify` finds it
 * intact (for a store damaged on purpose: finds the damage).
 */
async function assertStoreUnchanged(storeDir: string, before: string[], opts: { damaged?: boolean } = {}): Promise<void> {
  assert.deepEqual(snapshot(storeDir), before, `the store at ${storeDir} changed`)
  const report = await verifyStore(await openLocalStore(storeDir), { narHash: true })
  if (opts.damaged) assert.ok(report.problems.length > 0, 'verify does not see the damage')
  else assert.deepEqual(report.problems, [], `verify finds problems in ${storeDir}`)
}

/** A fresh copy of the seeded store, and an empty scratch folder for outputs. */
function freshCase(): { dir: string; store: string; out: string } {
  const dir = path.join(root, `case-${++caseCounter}`)
  const store = path.join(dir, 'store')
  const out = path.join(dir, 'out')
  fs.cpSync(pristine, store, { recursive: true })
  fs.mkdirSync(out)
  return { dir, store, out }
}

function expand(arg: string, out: string): string {
  return arg.replaceAll('{seed}', SEED_PATH).replaceAll('{input}', input).replaceAll('{corpus}', CORPUS).replaceAll('{out}', out)
}

/** `args` with `--store` after the command name. */
function withStore(args: string[], store: string, out: string): string[] {
  const [cmd, ...rest] = args.map((a) => expand(a, out))
  return [cmd!, '--store', store, ...rest]
}

/** Exit code as expected, nothing on stdout, exactly one `error:` line on stderr. */
function assertCleanFailure(r: CliResult, exit: number, error: RegExp): void {
  assert.match(r.stderr, /^error: [^\n]*\n$/, `want exactly one "error:" line on stderr, got:\n${r.stderr}`)
  assert.match(r.stderr.slice(0, -1), error)
  assert.equal(r.code, exit, `exit code (stderr: ${r.stderr.trim()})`)
  assert.equal(r.stdout.length, 0, `stdout should be empty, got ${r.stdout.length} bytes`)
}

function assertNothingLeftIn(out: string): void {
  assert.deepEqual(fs.readdirSync(out), [], `partial output left in ${out}`)
}

// --- gRPC: raw request bytes from the corpus, over a real socket ---------------

const METHODS: Record<GrpcMethod, { path: string; kind: 'unary' | 'client-stream' | 'server-stream' }> = {
  'BlobService/Stat': { path: '/tvix.castore.v1.BlobService/Stat', kind: 'unary' },
  'BlobService/Read': { path: '/tvix.castore.v1.BlobService/Read', kind: 'server-stream' },
  'DirectoryService/Get': { path: '/tvix.castore.v1.DirectoryService/Get', kind: 'server-stream' },
  'DirectoryService/Put': { path: '/tvix.castore.v1.DirectoryService/Put', kind: 'client-stream' },
  'PathInfoService/Get': { path: '/tvix.store.v1.PathInfoService/Get', kind: 'unary' },
  'PathInfoService/Put': { path: '/tvix.store.v1.PathInfoService/Put', kind: 'unary' },
  'PathInfoService/CalculateNAR': { path: '/tvix.store.v1.PathInfoService/CalculateNAR', kind: 'unary' },
}

interface CallResult {
  code: number
  details: string
  /** Response messages received (server streams) before the status. */
  messages: number
}

const raw = (b: Buffer) => b

function callRaw(client: Client, method: GrpcMethod, files: string[]): Promise<CallResult> {
  const { path: p, kind } = METHODS[method]
  const bodies = files.map((f) => fs.readFileSync(path.join(GRPC_DIR, f)))
  const options = { deadline: Date.now() + 15_000 }
  return new Promise((resolve) => {
    const done = (err: { code: number; details: string } | null, messages = 0) =>
      resolve(err ? { code: err.code, details: err.details, messages } : { code: Status.OK, details: '', messages })
    if (kind === 'unary') {
      assert.equal(bodies.length, 1)
      client.makeUnaryRequest(p, raw, raw, bodies[0]!, options, (err) => done(err))
    } else if (kind === 'client-stream') {
      const call = client.makeClientStreamRequest(p, raw, raw, options, (err) => done(err))
      for (const b of bodies) call.write(b)
      call.end()
    } else {
      assert.equal(bodies.length, 1)
      let messages = 0
      const call = client.makeServerStreamRequest(p, raw, raw, bodies[0]!, options)
      call.on('data', () => messages++)
      call.on('error', (e: { code: number; details: string }) => done(e, messages))
      call.on('end', () => done(null, messages))
    }
  })
}

function grpcClient(d: RunningDaemon): Client {
  return new Client(d.url.replace(/^grpc\+unix:\/\//, 'unix:'), credentials.createInsecure())
}

function assertStatus(r: CallResult, status: StatusName, details: RegExp): void {
  assert.equal(Status[r.code], status, `status (details: ${r.details})`)
  assert.match(r.details, details)
  assert.equal(r.messages, 0, 'an error comes before any response message')
}

/** Each daemon log line: start, stop, or one line per failed call; never a stack trace. */
const LOG_LINE = /^\S+Z (tvix-store daemon (serving .*|stopped)|SIGTERM: stopping.*|\w+Service\/\w+ failed: [A-Z_]+: .*)$/

function assertCleanLog(log: string): void {
  for (const line of log.split('\n').filter(Boolean)) assert.match(line, LOG_LINE)
}

// --- damaging a store on disk -------------------------------------------------

function objectFile(store: string, object: Damage['object']): string {
  const b3 = (kind: 'blobs' | 'dirs', hex: string) => path.join(store, kind, 'b3', hex.slice(0, 2), hex)
  switch (object) {
    case 'blob a.txt':
      return b3('blobs', SEED.blobs['a.txt'])
    case 'blob sub/b.txt':
      return b3('blobs', SEED.blobs['sub/b.txt'])
    case 'directory sub':
      return b3('dirs', SEED.directories.sub)
    case 'directory root':
      return b3('dirs', SEED.directories.root)
    case 'pathinfo seed':
      return path.join(store, 'pathinfo', path.basename(SEED_PATH).slice(0, 32))
  }
}

function damage(store: string, d: Damage): void {
  const file = objectFile(store, d.object)
  const bytes = fs.readFileSync(file)
  // Objects are written read-only (0444): make the file writable, as an accident or an attacker would.
  fs.chmodSync(file, 0o644)
  switch (d.how) {
    case 'overwrite, same size': {
      const changed = Buffer.from(bytes)
      changed[changed.length - 1]! ^= 0x01
      fs.writeFileSync(file, changed)
      break
    }
    case 'truncate':
      fs.writeFileSync(file, bytes.subarray(0, bytes.length >> 1))
      break
    case 'append':
      fs.appendFileSync(file, 'more')
      break
    case 'garbage':
      fs.writeFileSync(file, 'garbage, not a protobuf message')
      break
    case 'delete':
      fs.rmSync(file)
      return
  }
  fs.chmodSync(file, 0o444)
}

// --- the suite -----------------------------------------------------------------

before(async () => {
  fs.mkdirSync(input)
  fs.writeFileSync(path.join(input, 'hello.txt'), 'hello\n')
  fs.writeFileSync(path.join(input, 'has space'), 'a file whose name is not a valid store path name\n')
  const r = await runCli(['import', '--store', pristine, '--nar', path.join(NAR_DIR, 'seed.nar'), '--name', 'seed'])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout.toString(), `${SEED_PATH}\n`)
})

after(() => {
  fs.rmSync(root, { recursive: true, force: true })
})

describe('the corpus itself', () => {
  const dirFiles = (dir: string) => new Map(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f))]))

  test('the committed NAR files are exactly what make-nars.ts generates', () => {
    const want = narCorpus()
    const have = dirFiles(NAR_DIR)
    assert.deepEqual([...have.keys()].sort(), [...want.keys()].sort(), 'run: node --import tsx test/corpus/make-nars.ts')
    for (const [f, bytes] of want) assert.ok(have.get(f)!.equals(bytes), `${f} differs from the generator's; rerun make-nars.ts`)
  })

  test('the committed gRPC messages are exactly what make-grpc.ts generates', () => {
    const want = grpcCorpus()
    const have = dirFiles(GRPC_DIR)
    assert.deepEqual([...have.keys()].sort(), [...want.keys()].sort(), 'run: node --import tsx test/corpus/make-grpc.ts')
    for (const [f, bytes] of want) assert.ok(have.get(f)!.equals(bytes), `${f} differs from the generator's; rerun make-grpc.ts`)
  })

  test('at least 30 cases, unique names, and every corpus file is used', () => {
    const names = [...NAR_CASES, ...CLI_CASES, ...CORRUPT_CASES, ...GRPC_CASES, ...GRPC_CONTROLS].map((c) => c.name)
    assert.ok(names.length - GRPC_CONTROLS.length >= 30)
    assert.equal(new Set(names).size, names.length, 'case names are unique')
    const narUsed = new Set(['seed.nar', ...NAR_CASES.map((c) => `${c.name}.nar`), ...CLI_CASES.flatMap((c) => (c.stdin ? [path.basename(c.stdin)] : []))])
    assert.deepEqual([...narUsed].sort(), fs.readdirSync(NAR_DIR).sort())
    const grpcUsed = [...GRPC_CASES, ...GRPC_CONTROLS, ...CORRUPT_CASES.filter((c): c is CorruptGrpcCase => c.via === 'grpc')].flatMap((c) => c.messages)
    assert.deepEqual([...new Set(grpcUsed)].sort(), fs.readdirSync(GRPC_DIR).sort())
  })

  test('the seeded store holds the objects the gRPC messages refer to', () => {
    for (const object of ['blob a.txt', 'blob sub/b.txt', 'directory sub', 'directory root', 'pathinfo seed'] as const) {
      assert.ok(fs.existsSync(objectFile(pristine, object)), `${object} is in the seeded store`)
    }
  })
})

/**
 * Every NAR case runs the op `import --nar` runs, in-process, on a fresh
 * copy of the seeded store (a process per case cost most of this file's
 * time); the message it fails with is the `error:` line the command prints.
 * What only a process shows (one line on stderr, exit code 1, nothing on
 * stdout) is checked through the built CLI on a sample of each kind of
 * failure: a truncation, a bad token, an ordering rule and trailing bytes.
 */
const NAR_CLI_SAMPLE = new Set(['empty-file', 'magic-wrong-version', 'entries-unsorted', 'trailing-second-nar'])


describe('NAR files fed to import --nar', { concurrency: 2 }, () => {
  test('the sample run through the CLI is in the corpus', () => {
    assert.deepEqual(NAR_CASES.filter((c) => NAR_CLI_SAMPLE.has(c.name)).length, NAR_CLI_SAMPLE.size)
  })
  for (const c of NAR_CASES) {
    test(`nar: ${c.name}`, { todo: c.todo }, async () => {
      const { store, out } = freshCase()
      const before = snapshot(store)
      const file = path.join(CORPUS, 'nar', `${c.name}.nar`)
      await assert.rejects(importNarInProcess(store, fs.createReadStream(file, { highWaterMark: 1 << 20 })), (e: Error) => {
        assert.ok(e instanceof StoreError && e.exitCode === 1, `want a StoreError with exit code 1, got ${e.name}: ${e.message}`)
        assert.doesNotMatch(e.message, /\n/, 'the message is one line')
        assert.match(`error: ${e.message}`, c.error)
        return true
      })
      await assertStoreUnchanged(store, before)
      if (!NAR_CLI_SAMPLE.has(c.name)) return
      const r = await runCli(withStore(['import', '--nar', `{corpus}/nar/${c.name}.nar`, '--name', 'bad'], store, out))
      assertCleanFailure(r, 1, c.error)
      await assertStoreUnchanged(store, before)
    })
  }
})

describe('bad arguments on the command line', { concurrency: 2 }, () => {
  for (const c of CLI_CASES) {
    test(`cli: ${c.name}`, { todo: c.todo }, async () => {
      const fresh = freshCase()
      const { out } = fresh
      const store = c.store === 'missing' ? path.join(fresh.dir, 'no-store-here') : fresh.store
      const before = snapshot(store)
      const stdin = c.stdin ? fs.readFileSync(path.join(CORPUS, c.stdin)) : undefined
      const r = await runCli(withStore(c.args, store, out), { input: stdin })
      assertCleanFailure(r, c.exit, c.error)
      assertNothingLeftIn(out)
      await assertStoreUnchanged(store, before)
      if (c.store === 'missing') assert.ok(!fs.existsSync(store), `${store} was created`)
    })
  }
})

describe('stores damaged on disk', { concurrency: 2 }, () => {
  async function run(c: CorruptCase, dir: string, store: string, out: string): Promise<void> {
    if (c.via === 'local') {
      const r = await runCli(withStore(c.args, store, out))
      assertCleanFailure(r, c.exit, c.error)
      return
    }
    const daemon = await startDaemon(store, `unix:${path.join(dir, 'd.sock')}`)
    try {
      if (c.via === 'grpc') {
        const client = grpcClient(daemon)
        try {
          assertStatus(await callRaw(client, c.method, c.messages), c.status, c.details)
        } finally {
          client.close()
        }
      } else {
        const r = await runCli(withStore(c.args, daemon.url, out))
        assertCleanFailure(r, c.exit, c.error)
      }
    } finally {
      assert.equal(await daemon.stop(), 0)
    }
    assertCleanLog(daemon.log())
  }

  for (const c of CORRUPT_CASES) {
    test(`damaged: ${c.name}`, { todo: c.todo }, async () => {
      const { dir, store, out } = freshCase()
      damage(store, c.damage)
      const before = snapshot(store)
      await run(c, dir, store, out)
      assertNothingLeftIn(out)
      await assertStoreUnchanged(store, before, { damaged: true })
    })
  }
})

describe('bad gRPC messages at a daemon', () => {
  let daemon: RunningDaemon
  let client: Client
  let store: string

  before(async () => {
    const c = freshCase()
    store = c.store
    daemon = await startDaemon(store, `unix:${path.join(c.dir, 'd.sock')}`)
    client = grpcClient(daemon)
  })
  after(async () => {
    client.close()
    assert.equal(await daemon.stop(), 0)
  })

  for (const c of GRPC_CASES) {
    test(`grpc: ${c.name}`, { todo: c.todo }, async () => {
      const before = snapshot(store)
      assertStatus(await callRaw(client, c.method, c.messages), c.status, c.details)
      await assertStoreUnchanged(store, before)
    })
  }

  test('the valid messages the cases were made from are accepted (after every case)', async () => {
    for (const c of GRPC_CONTROLS) {
      const r = await callRaw(client, c.method, c.messages)
      assert.equal(Status[r.code], 'OK', `${c.name}: ${r.details}`)
    }
  })

  test('the daemon logged one line per failed call and no stack trace', () => {
    assertCleanLog(daemon.log())
    const failed = daemon.log().split('\n').filter((l) => / failed: /.test(l))
    const logged = GRPC_CASES.filter((c) => c.status !== 'NOT_FOUND').length
    assert.equal(failed.length, logged)
  })
})
