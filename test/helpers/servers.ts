/**
 * Real S3 (Ceph radosgw on a one-node cluster) and PostgreSQL for the tests
 * of the distributed backends, on loopback, in a folder of their own.
 *
 * Every daemon runs in the foreground (`-f`, `postgres -D`) as a child of
 * the process that started it, leading its own process group, so stop()
 * (and the exit of that process) ends it and whatever it started. `npm
 * test` starts them once for the whole suite (test/run-suite.ts passes
 * where they are to every test file in TVIX_TEST_BACKENDS); a test file
 * run on its own starts its own (backendsForTests in ./suite-servers.ts).
 *
 * Settings that matter (found the hard way): radosgw connects to the
 * monitor in 'secure' mode unless told `ms mon client mode = crc`, which
 * without cephx it cannot do; `tcp_nodelay=1` on its frontend, or small
 * answers wait 40 ms for a delayed ACK; the OSD keeps objects in memory
 * (memstore), ample for tests and no 20 GiB sparse file; PostgreSQL
 * refuses to run as root, so as root it runs as the `postgres` user, and
 * durability is off (a throwaway cluster).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { freePort } from './free-port.js'

const run = promisify(execFile)

/** Where the servers are, as test files receive it (JSON in TVIX_TEST_BACKENDS). */
export interface BackendsInfo {
  s3?: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string }
  pg?: { url: string }
}

export interface RunningBackends extends BackendsInfo {
  stop(): Promise<void>
}

/** Generous: a loaded CI machine starts the cluster in 12-60 s. */
const READY_MS = 240_000

/** Why the servers cannot run here, or undefined when their programs are installed. */
export function missingPrograms(): string | undefined {
  const need = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph']
  const dirs = (process.env.PATH ?? '').split(':')
  const has = (p: string) => dirs.some((d) => fs.existsSync(path.join(d, p)))
  const missing = need.filter((p) => !has(p))
  if (!pgBin()) missing.push('postgresql (initdb, postgres)')
  return missing.length > 0 ? `not installed: ${missing.join(', ')} (apt-get install ceph-mon ceph-osd radosgw ceph-common postgresql)` : undefined
}

function pgBin(): string | undefined {
  const root = '/usr/lib/postgresql'
  const versions = fs.existsSync(root) ? fs.readdirSync(root).sort((a, b) => Number(b) - Number(a)) : []
  return versions.map((v) => path.join(root, v, 'bin')).find((b) => fs.existsSync(path.join(b, 'initdb')))
}

/** Polls `ready` until it holds; fails at once if `child` exited, and after READY_MS. */
async function until(what: string, ready: () => Promise<boolean>, child?: ChildProcess, log?: string): Promise<void> {
  const start = Date.now()
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode} during start-up${log ? ` (see ${log})` : ''}`)
    if (await ready().catch(() => false)) return
    if (Date.now() - start > READY_MS) throw new Error(`${what} not ready after ${READY_MS / 1000} s${log ? ` (see ${log})` : ''}`)
    await sleep(200)
  }
}

/** Starts S3 and PostgreSQL in `dir` (which must be short: unix socket paths). */
export async function startBackends(dir: string): Promise<RunningBackends> {
  const children: ChildProcess[] = []
  const daemon = (cmd: string, args: string[], log: string, uid?: number) => {
    const out = fs.openSync(log, 'a')
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', out, out], uid })
    fs.closeSync(out)
    child.on('error', () => {})
    children.push(child)
    return child
  }
  const stop = async () => {
    // PostgreSQL: SIGINT is its fast shutdown; the Ceph daemons end on SIGTERM. Then whatever is left is killed.
    for (const c of children.reverse()) signal(c, c.spawnfile.endsWith('postgres') ? 'SIGINT' : 'SIGTERM')
    const gone = Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))))
    const timer = sleep(15_000, 'timeout')
    if ((await Promise.race([gone, timer])) === 'timeout') for (const c of children) signal(c, 'SIGKILL')
    await gone
  }
  try {
    const [pg, s3] = await Promise.all([startPostgres(dir, daemon), startCeph(dir, daemon)])
    return { s3, pg, stop }
  } catch (e) {
    await stop()
    throw e
  }
}

function signal(c: ChildProcess, sig: NodeJS.Signals): void {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return
  try {
    process.kill(-c.pid, sig)
  } catch {
    // gone already
  }
}

type Daemon = (cmd: string, args: string[], log: string, uid?: number) => ChildProcess

async function startPostgres(dir: string, daemon: Daemon): Promise<BackendsInfo['pg']> {
  const bin = pgBin()!
  const p = path.join(dir, 'pg')
  fs.mkdirSync(path.join(p, 'sock'), { recursive: true })
  const port = await freePort()
  // PostgreSQL refuses to run as root: then as the postgres user, who must reach the folder.
  let uid: number | undefined
  if (process.getuid?.() === 0) {
    uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim())
    for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) fs.chmodSync(d, fs.statSync(d).mode | 0o011)
    await run('chown', ['-R', String(uid), p])
  }
  const data = path.join(p, 'data')
  await run(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync'], { uid })
  fs.appendFileSync(
    path.join(data, 'postgresql.conf'),
    [`listen_addresses = '127.0.0.1'`, `port = ${port}`, `unix_socket_directories = '${path.join(p, 'sock')}'`, 'fsync = off', 'synchronous_commit = off', 'full_page_writes = off', 'max_connections = 300', ''].join('\n'),
  )
  const log = path.join(p, 'postgres.log')
  const child = daemon(path.join(bin, 'postgres'), ['-D', data], log, uid)
  await until('postgres', async () => (await run(path.join(bin, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port)]).then(() => true)), child, log)
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres` }
}

async function startCeph(dir: string, daemon: Daemon): Promise<BackendsInfo['s3']> {
  const c = path.join(dir, 'ceph')
  for (const d of ['mon', 'osd', 'run', 'log', 'rgw']) fs.mkdirSync(path.join(c, d), { recursive: true })
  const [monPort, s3Port] = [await freePort(), await freePort()]
  const fsid = randomUUID()
  const conf = path.join(c, 'ceph.conf')
  fs.writeFileSync(
    conf,
    `[global]
fsid = ${fsid}
mon initial members = a
mon host = v2:127.0.0.1:${monPort}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
run dir = ${c}/run
admin socket = ${c}/run/$name.asok
log file = ${c}/log/$name.log
keyring = ${c}/keyring
mon data = ${c}/mon/$cluster-$id
osd data = ${c}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon max pg per osd = 1000
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.1
paxos min wait = 0.01
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:${s3Port} tcp_nodelay=1
rgw data = ${c}/rgw
`,
  )
  const log = path.join(c, 'log', 'setup.log')
  const ceph = (...args: string[]) => run('ceph', ['-c', conf, '--connect-timeout', '10', ...args], { timeout: 60_000 })
  await run('monmaptool', ['--create', '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, '--fsid', fsid, path.join(c, 'monmap')])
  await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', path.join(c, 'monmap')])
  const mon = daemon('ceph-mon', ['-f', '-c', conf, '-i', 'a'], log)
  await until('ceph-mon', async () => (await ceph('mon', 'stat')).stdout.length > 0, mon, log)
  const osdUuid = randomUUID()
  const id = (await ceph('osd', 'new', osdUuid)).stdout.trim()
  fs.mkdirSync(path.join(c, 'osd', `ceph-${id}`), { recursive: true })
  await run('ceph-osd', ['-c', conf, '-i', id, '--mkfs', '--osd-uuid', osdUuid])
  const osd = daemon('ceph-osd', ['-f', '-c', conf, '-i', id], log)
  await until('ceph-osd', async () => / 1 up/.test((await ceph('osd', 'stat')).stdout), osd, log)
  const creds = { accessKeyId: 'tvix-test', secretAccessKey: randomUUID() }
  // Creates radosgw's pools too; returns once they are writable.
  await run('radosgw-admin', ['-c', conf, 'user', 'create', '--uid=test', '--display-name=test', `--access-key=${creds.accessKeyId}`, `--secret=${creds.secretAccessKey}`], { timeout: READY_MS })
  const rgw = daemon('radosgw', ['-f', '-c', conf, '-n', 'client.rgw.a'], log)
  const endpoint = `http://127.0.0.1:${s3Port}`
  await until('radosgw', async () => (await fetch(endpoint)).status < 500, rgw, log)
  return { endpoint, region: 'us-east-1', ...creds }
}

/** A folder for the servers: short (unix sockets), removed by the caller. */
export function backendsDir(): string {
  return fs.mkdtempSync(path.join(fs.existsSync('/tmp') ? '/tmp' : os.tmpdir(), 'tvix-bk-'))
}
