/**
 * The binary-cache part of `npm run bench` (BENCH_PARTS=cache): real Nix
 * 2.8 against our daemon's HTTP binary cache (`daemon --http-listen`), next
 * to Nix against an uncompressed file:// cache Nix wrote itself, on the same
 * closure, ratios side by side in one run (the targets):
 *
 *  1. nix copy --from http://ours          vs nix copy --from file://DIR           ≤ 1.2×
 *     and vs the same Nix-written cache behind a static HTTP server (what
 *     Nix's HTTP client costs by itself)                                      ≤ 1.2×
 *  2. nix copy --to http://ours?compression=none (daemon --http-upload)
 *                                          vs nix copy --to file://DIR?compression=none   ≤ 1.5×
 *     and vs Nix uploading to a server that stores nothing (its HTTP
 *     floor: HTTP/1.1 keep-alive as ours, every answer at once)              ≤ 1.2×
 *  3. our copy --from nix+file://DIR --no-check-sigs
 *                                          vs nix copy --from file://DIR --no-check-sigs  ≤ 1.0×
 *     (wall and CPU)
 * For (1) and (2) the CPU rows add our daemon's CPU during each copy to Nix's.
 *  4. the daemon's RSS while serving 16 concurrent full-speed downloads
 *     (curl to /dev/null) of the NAR of a 1 GiB path: flat, ≤ 200 MiB
 *     (VmRSS sampled every 100 ms, VmHWM), and the MB/s delivered.
 *
 * Every copy lands in a fresh target (a chroot Nix store local?root=DIR, a
 * fresh folder, a fresh daemon for uploads) and every Nix run gets a fresh
 * XDG_CACHE_HOME: Nix 2.8 remembers narinfos in binary-cache-v6.sqlite, and a
 * warm one re-running a copy asks the cache nothing. Each comparison starts
 * with one untimed run per side that checks the copied closure (paths, NAR
 * hashes and sizes, references) against Nix's listing of the source; then
 * REPS timed runs per side, the order of the sides rotating each round
 * (every process under GNU time, for its CPU). The downloads of (1) come from
 * one daemon, as from a cache server that is up anyway.
 *
 * The closure: four paths made from test/helpers/trees.ts (~2,000 small
 * files, files of 3 and 20 MiB, a diamond and a self-reference), imported
 * into a chroot Nix store by `nix-store --import` of an export stream written
 * here (NARs from `nix-store --dump`, references declared), and into ours by
 * `copy --closure` from that chroot. Parts 2 and 3 need `daemon
 * --http-upload` and the nix+file:// backend: a CLI without them skips those
 * rows, saying so under the table.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { pipeline } from 'node:stream/promises'
import type { Writable } from 'node:stream'
import { randomBytes, rng, TREES } from '../test/helpers/trees.js'
import { makeBigFile } from './big.js'
import { startFileCacheServer } from '../test/helpers/file-cache-server.js'
import { type BenchDaemon, cpuSeconds, mbps, procKiB, startDaemon } from './daemon.js'
import { sized, sizeText } from './quick.js'
import { mibAtMost, ratioAtMost, type Target, type Unit } from './targets.js'

const MiB = 1024 * 1024
/** The path served to DOWNLOADS clients: 1 GiB (16 MiB under BENCH_QUICK=1). */
const BIG_BYTES = sized(1024, 16) * MiB
const DOWNLOADS = 16
const NIX32 = '0123456789abcdfghijklmnpqrsvwxyz'
/** `nix-store --export`'s marker after each NAR ("NIXE"). */
const EXPORT_MAGIC = 0x4558494e

type Tool = 'ours' | 'nix'
/** `cpuMs`: user + system CPU of the process (GNU time), when measured. */
type Sample = { ms: number; cpuMs?: number; stdout: string }

export interface CacheBenchContext {
  /** The snapshot's bin/run.js. */
  bin: string
  repo: string
  tmpRoot: string
  reps: number
  /** Our CLI's environment, and Nix's (NIX_CONFIG for a private store). */
  env: NodeJS.ProcessEnv
  nixEnv: NodeJS.ProcessEnv
  /** Runs our CLI or Nix (`program`), env merged over the tool's; wall time spawn → exit; rejects on a non-zero exit. */
  run(tool: Tool, args: string[], opts: { stdout: 'pipe'; program?: 'nix-store' | 'nix'; env?: NodeJS.ProcessEnv; rss?: boolean }): Promise<Sample>
  addRow(figure: string, unit: Unit, ours: number[], nix?: number[], target?: Target): void
  check(name: string, ok: boolean, detail: string): void
  note(line: string): void
  rmTree(p: string): void
}

// ---------------------------------------------------------------- the closure

interface ClosurePath {
  storePath: string
  tree: string
  references: string[]
}

/** A store path with a seeded hash part (input-addressed paths are only names to Nix). */
function seededStorePath(name: string, seed: number): string {
  const r = rng(seed)
  return `/nix/store/${Array.from({ length: 32 }, () => NIX32[Math.floor(r() * 32)]).join('')}-${name}`
}

/** Four paths, references first: top → lib → data, top → data (a diamond), top → wide, lib → lib. */
function makeClosure(dir: string): ClosurePath[] {
  const sp = {
    wide: seededStorePath('cb-wide', 0xcb01),
    data: seededStorePath('cb-data', 0xcb02),
    lib: seededStorePath('cb-lib', 0xcb03),
    top: seededStorePath('cb-top', 0xcb04),
  }
  const tree = (name: keyof typeof sp) => path.join(dir, name)
  TREES.wide!(tree('wide'))
  TREES['big-file']!(tree('data'))
  for (let i = 0; i < 3; i++) fs.writeFileSync(path.join(tree('data'), `part${i}.bin`), randomBytes(sized(3, 1) * MiB, 0xcb10 + i))
  TREES.mixed!(tree('lib'))
  fs.writeFileSync(path.join(tree('lib'), 'data-path'), `${sp.data}/big.bin\n`)
  fs.writeFileSync(path.join(tree('lib'), 'self'), `${sp.lib}\n`)
  TREES['odd-names']!(tree('top'))
  fs.mkdirSync(path.join(tree('top'), 'bin'))
  fs.writeFileSync(path.join(tree('top'), 'bin/app'), `#!/bin/sh\nexec ${sp.lib}/run.sh ${sp.wide}/f0001 ${sp.data}/small.txt\n`, { mode: 0o755 })
  return [
    { storePath: sp.wide, tree: tree('wide'), references: [] },
    { storePath: sp.data, tree: tree('data'), references: [] },
    { storePath: sp.lib, tree: tree('lib'), references: [sp.data, sp.lib] },
    { storePath: sp.top, tree: tree('top'), references: [sp.data, sp.lib, sp.wide] },
  ]
}

const u64 = (n: number) => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(BigInt(n))
  return b
}
const str = (s: string) => {
  const d = Buffer.from(s)
  return Buffer.concat([u64(d.length), d, Buffer.alloc((8 - (d.length % 8)) % 8)])
}
const write = (s: Writable, b: Buffer) => new Promise<void>((resolve, reject) => s.write(b, (e) => (e ? reject(e) : resolve())))
const exited = (p: ReturnType<typeof spawn>) => new Promise<number | null>((resolve) => p.once('close', (code) => resolve(code)))

/**
 * `nix-store --import` into the chroot store at `root` of what `nix-store
 * --export` would write for `paths` (references first): per path 1, its NAR
 * (streamed from `nix-store --dump`), the magic, path, references, no
 * deriver, no signature; 0 at the end.
 */
async function nixImport(env: NodeJS.ProcessEnv, root: string, paths: ClosurePath[]): Promise<string> {
  const imp = spawn('nix-store', ['--store', `local?root=${root}`, '--import'], { env, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  imp.stdout.on('data', (c: Buffer) => (out += c.toString()))
  imp.stderr.on('data', (c: Buffer) => (err += c.toString()))
  const done = exited(imp)
  try {
    for (const p of paths) {
      await write(imp.stdin, u64(1))
      const dump = spawn('nix-store', ['--dump', p.tree], { env, stdio: ['ignore', 'pipe', 'inherit'] })
      const dumped = exited(dump)
      await pipeline(dump.stdout, imp.stdin, { end: false })
      if ((await dumped) !== 0) throw new Error(`nix-store --dump ${p.tree} failed`)
      await write(imp.stdin, Buffer.concat([u64(EXPORT_MAGIC), str(p.storePath), u64(p.references.length), ...p.references.map(str), str(''), u64(0)]))
    }
    imp.stdin.end(u64(0))
  } catch (e) {
    imp.kill()
    await done
    throw new Error(`nix-store --import failed: ${(e as Error).message}\n${err}`)
  }
  if ((await done) !== 0) throw new Error(`nix-store --import failed:\n${err}`)
  return out
}

/** A closure listing reduced to what both tools must agree on, as one comparable string. */
function normalListing(json: string): string {
  const entries = JSON.parse(json) as { path: string; narHash: string; narSize: number; references: string[] }[]
  return JSON.stringify(
    entries
      .map((e) => ({ path: e.path, narHash: e.narHash, narSize: e.narSize, references: [...e.references].sort() }))
      .sort((a, b) => (a.path < b.path ? -1 : 1)),
  )
}

/** A fresh daemon on `store` serving it as a binary cache too; `http` is its cache URL (never missing: an empty URL would make Nix use /nix/store). */
async function startCacheDaemon(ctx: CacheBenchContext, store: string, extraArgs: string[] = []): Promise<BenchDaemon & { http: string }> {
  const d = await startDaemon(ctx, store, ['--http-listen', '127.0.0.1:0', ...extraArgs])
  if (d.http !== undefined) return { ...d, http: d.http }
  await d.stop()
  throw new Error('the daemon did not say where its binary cache listens ("Nix binary cache at http://…")')
}

/**
 * An HTTP binary cache that accepts every upload and keeps nothing (every
 * narinfo 404s, so Nix uploads the whole closure): what Nix's own upload
 * costs, with no server work behind it.
 */
async function startDiscardingCache(): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/nix-cache-info') return void res.end('StoreDir: /nix/store\n')
    if (req.method === 'PUT') return void req.resume().on('end', () => res.end())
    req.resume()
    res.statusCode = 404
    res.end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** Why a comparison cannot run with this CLI (a flag or store URL it does not know yet), else undefined. */
function missingFeature(e: unknown): string | undefined {
  const m = /error: (Nonexistent flag: \S+|unknown store URL scheme "[^"]+")/.exec(String((e as Error).message))
  return m?.[1]
}

// ---------------------------------------------------------------- the bench

export async function benchCache(ctx: CacheBenchContext): Promise<number> {
  const t0 = performance.now()
  const work = path.join(ctx.tmpRoot, 'cache')
  fs.mkdirSync(work, { recursive: true })
  let fresh = 0
  /** A new empty directory under the part's folder. */
  const freshDir = (what: string) => {
    const d = path.join(work, `${what}-${fresh++}`)
    fs.mkdirSync(d, { recursive: true })
    return d
  }
  /** Nix with a fresh narinfo disk cache (XDG_CACHE_HOME): the run sees the cache as a first-time client. */
  // rss: under GNU time, which also gives the CPU (user + system) each run used.
  const nix = (args: string[]) => ctx.run('nix', args, { stdout: 'pipe', program: 'nix', env: { XDG_CACHE_HOME: freshDir('xdg') }, rss: true })
  const ours = (args: string[]) => ctx.run('ours', args, { stdout: 'pipe', rss: true })
  const ms = (xs: Sample[]) => xs.map((x) => x.ms)
  const cpu = (xs: Sample[]) => xs.map((x) => x.cpuMs ?? NaN)
  try {
    // ---- the closure, in a chroot Nix store, in an uncompressed Nix-written cache, and in our store
    console.error('[cache] making the closure; nix-store --import into a chroot store, copy --closure into ours, nix copy --to file://…?compression=none')
    const paths = makeClosure(path.join(work, 'trees'))
    const top = paths[paths.length - 1]!.storePath
    const nixSrc = path.join(work, 'nix-src')
    const imported = await nixImport(ctx.nixEnv, nixSrc, paths)
    ctx.check('cache: nix-store --import took the four paths of the closure', imported.trim().split('\n').sort().join() === paths.map((p) => p.storePath).sort().join(), imported)
    const listingJson = (await nix(['path-info', '--json', '--recursive', '--store', `local?root=${nixSrc}`, top])).stdout
    const expected = normalListing(listingJson)
    const declared = (JSON.parse(expected) as { path: string; references: string[] }[]).every((e) => e.references.join() === [...paths.find((p) => p.storePath === e.path)!.references].sort().join())
    ctx.check('cache: Nix lists the closure with the references declared', declared && JSON.parse(expected).length === paths.length, expected)
    const narBytes = (JSON.parse(expected) as { narSize: number }[]).reduce((n, e) => n + e.narSize, 0)
    const listingFile = path.join(work, 'closure.json')
    fs.writeFileSync(listingFile, listingJson)
    const oursSrc = path.join(work, 'ours-src')
    await ours(['copy', '--closure', listingFile, '--nix-root', nixSrc, '--to', oursSrc])
    const oursListing = async (store: string) => normalListing((await ours(['path-info', '--json', '--recursive', '--store', store, top])).stdout)
    const nixListing = async (url: string) => normalListing((await nix(['path-info', '--json', '--recursive', '--store', url, top])).stdout)
    ctx.check('cache: our store holds the same closure as the chroot Nix store', (await oursListing(oursSrc)) === expected, 'path-info listings differ')
    const nixCache = path.join(work, 'nix-cache')
    await nix(['copy', '--store', `local?root=${nixSrc}`, '--to', `file://${nixCache}?compression=none`, top])
    ctx.check('cache: the Nix-written file:// cache lists the same closure', (await nixListing(`file://${nixCache}`)) === expected, 'path-info listings differ')
    ctx.note(`the closure: ${paths.length} paths, ${(narBytes / MiB).toFixed(1)} MiB of NAR (~2,000 files of ≤ 300 bytes, files of ${sized(3, 1)} and 20 MiB), ${top}`)

    /**
     * One untimed run per side that checks the target (where it can be
     * listed), then REPS timed runs per side, the order rotating each round;
     * `copy` makes a fresh target and copies into it. `serverCpu`: the CPU a
     * server process used during that run (our daemon's), in ms as `ms`.
     */
    type Run = { sample: Sample; serverCpu?: number; listing?: () => Promise<string>; done: () => Promise<void> }
    const compare = async <S extends string>(what: string, sides: S[], copy: (side: S) => Promise<Run>) => {
      const samples = Object.fromEntries(sides.map((t) => [t, [] as Sample[]])) as Record<S, Sample[]>
      const serverCpu = Object.fromEntries(sides.map((t) => [t, [] as number[]])) as Record<S, number[]>
      for (let rep = -1; rep < ctx.reps; rep++) {
        const k = (rep + 1) % sides.length
        for (const side of [...sides.slice(k), ...sides.slice(0, k)]) {
          const r = await copy(side)
          if (rep < 0 && r.listing) ctx.check(`cache: ${what}, ${side} side: the target holds the closure`, (await r.listing()) === expected, 'path-info listings differ')
          else if (rep >= 0) {
            samples[side].push(r.sample)
            if (r.serverCpu !== undefined) serverCpu[side].push(r.serverCpu)
          }
          await r.done()
        }
      }
      return { samples, serverCpu }
    }
    /** Nix's CPU in each run, plus what the server used for it. */
    const withServer = (xs: Sample[], server: number[]) => cpu(xs).map((c, i) => c + (server[i] ?? 0))
    /**
     * The rows of a `nix copy --from|--to http://ours` comparison: ours
     * against Nix's file:// copy (the target), Nix's HTTP floor
     * (`floor`: the same copy through an HTTP server that does nothing of
     * ours) against file://, ours against that floor (≤ 1.2×), and the CPU
     * (Nix's, plus our daemon's for ours).
     */
    const httpRows = (dir: '--from' | '--to', o: Sample[], f: Sample[], fl: Sample[], daemonCpu: number[], label: { file: string; floor: string; fileTarget: number }) => {
      ctx.addRow(`nix copy ${dir} http://ours | ${label.file}`, 's', ms(o), ms(f), ratioAtMost(label.fileTarget))
      ctx.addRow(`nix copy ${dir} ${label.floor} | ${label.file} (Nix's HTTP floor)`, 's', ms(fl), ms(f))
      ctx.addRow(`nix copy ${dir} http://ours | ${dir} ${label.floor}`, 's', ms(o), ms(fl), ratioAtMost(1.2))
      ctx.addRow(`nix copy ${dir} http://ours, CPU: Nix + our daemon | ${label.floor}, CPU`, 's', withServer(o, daemonCpu), cpu(fl))
      ctx.addRow(`  our daemon's CPU per nix copy ${dir} http://ours`, 's', daemonCpu)
    }
    /** The CPU (ms) `pid` uses while `fn` runs. */
    const cpuDuring = async <T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; cpu?: number }> => {
      const c0 = cpuSeconds(pid)
      const result = await fn()
      const c1 = cpuSeconds(pid)
      return { result, cpu: c0 !== undefined && c1 !== undefined ? (c1 - c0) * 1000 : undefined }
    }
    const skipped = (what: string, e: unknown): boolean => {
      const why = missingFeature(e)
      if (why === undefined) return false
      ctx.note(`${what}: skipped, this CLI lacks a feature (${why})`)
      return true
    }

    // ---- 1. nix copy --from http://ours vs --from file://, and vs a static HTTP server on the same Nix-written cache
    console.error(`[cache] nix copy --from http://ours vs --from http://(static server) vs --from file:// (Nix-written, uncompressed) ×${ctx.reps} each, fresh chroot store each`)
    const d1 = await startCacheDaemon(ctx, oursSrc)
    const stops: (number | null)[] = []
    const staticServer = await startFileCacheServer(nixCache)
    try {
      const from = await compare('nix copy --from a cache', ['ours', 'static', 'file'], async (side) => {
        const dest = freshDir('nix-dest')
        const src = side === 'ours' ? d1.http : side === 'static' ? staticServer.url : `file://${nixCache}`
        const { result: sample, cpu } = await cpuDuring(d1.pid, () => nix(['copy', '--no-check-sigs', '--from', src, '--to', `local?root=${dest}`, top]))
        return { sample, serverCpu: side === 'ours' ? cpu : undefined, listing: () => nixListing(`local?root=${dest}`), done: async () => ctx.rmTree(dest) }
      })
      // Nix's HTTP client alone costs more than its file:// reads: the same cache behind a static server shows that floor.
      httpRows('--from', from.samples.ours, from.samples.file, from.samples.static, from.serverCpu.ours, {
        file: '--from file:// (Nix-written)',
        floor: 'http://(static server, same cache)',
        fileTarget: 1.2,
      })
    } finally {
      await staticServer.close()
      stops.push(await d1.stop())
    }

    // ---- 2. nix copy --to http://ours vs --to file://, uncompressed, and vs a server that stores nothing
    console.error(`[cache] nix copy --to http://ours?compression=none (fresh daemon --http-upload) vs --to http://(stores nothing) vs --to file://…?compression=none ×${ctx.reps} each`)
    try {
      const to = await compare('nix copy --to a cache', ['ours', 'floor', 'file'], async (side) => {
        const dest = freshDir('upload')
        const d = side === 'ours' ? await startCacheDaemon(ctx, dest, ['--http-upload']) : undefined
        const sink = side === 'floor' ? await startDiscardingCache() : undefined
        try {
          const url = d ? `${d.http}?compression=none` : sink ? `${sink.url}?compression=none` : `file://${dest}?compression=none`
          const copy = () => nix(['copy', '--store', `local?root=${nixSrc}`, '--to', url, top])
          const { result: sample, cpu } = d ? await cpuDuring(d.pid, copy) : { result: await copy(), cpu: undefined }
          return { sample, serverCpu: cpu, listing: sink ? undefined : () => (d ? oursListing(dest) : nixListing(`file://${dest}`)), done: async () => ctx.rmTree(dest) }
        } finally {
          if (d) stops.push(await d.stop())
          await sink?.close()
        }
      })
      // Nix's HTTP upload alone (serial HEAD, PUT NAR, PUT narinfo per path, each NAR read whole first)
      // costs several times its file:// copy: a server that stores nothing shows that floor.
      httpRows('--to', to.samples.ours, to.samples.file, to.samples.floor, to.serverCpu.ours, {
        file: '--to file:// (compression=none)',
        floor: 'http://(stores nothing)',
        fileTarget: 1.5,
      })
    } catch (e) {
      if (!skipped('nix copy --to http://ours', e)) throw e
    }

    // ---- 3. our copy --from nix+file:// vs nix copy --from file://
    console.error(`[cache] copy --from nix+file:// (ours) vs nix copy --from file:// (same Nix-written cache) ×${ctx.reps} each, fresh store each`)
    try {
      const ourFrom = await compare('copy --from nix+file://', ['ours', 'nix'], async (tool) => {
        const dest = freshDir('from-file')
        const sample =
          tool === 'ours'
            ? await ours(['copy', '--from', `nix+file://${nixCache}`, '--to', dest, '--no-check-sigs', top])
            : await nix(['copy', '--no-check-sigs', '--from', `file://${nixCache}`, '--to', `local?root=${dest}`, top])
        return { sample, listing: () => (tool === 'ours' ? oursListing(dest) : nixListing(`local?root=${dest}`)), done: async () => ctx.rmTree(dest) }
      })
      ctx.addRow('copy --from nix+file:// (ours) | nix copy --from file://', 's', ms(ourFrom.samples.ours), ms(ourFrom.samples.nix), ratioAtMost(1.0))
      ctx.addRow('copy --from nix+file:// (ours) | nix copy --from file://, CPU', 's', cpu(ourFrom.samples.ours), cpu(ourFrom.samples.nix), ratioAtMost(1.0))
    } catch (e) {
      if (!skipped('copy --from nix+file://', e)) throw e
    }

    // ---- 4. the daemon's RSS while serving 16 concurrent downloads of a 1 GiB NAR
    stops.push(await benchDownloads(ctx, freshDir('big')))
    const bad = stops.filter((c) => c !== 0)
    ctx.check(`cache: all ${stops.length} daemons stopped with exit code 0 on SIGTERM`, bad.length === 0, bad.join(', '))
  } finally {
    ctx.rmTree(work)
  }
  return (performance.now() - t0) / 1000
}

/** curl of `url` to /dev/null at full speed: its HTTP status and the bytes it received. */
function curlToNull(url: string): Promise<{ status: number; bytes: number }> {
  const c = spawn('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', url], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  c.stdout.on('data', (b: Buffer) => (out += b.toString()))
  c.stderr.on('data', (b: Buffer) => (err += b.toString()))
  return new Promise((resolve, reject) => {
    c.on('error', reject)
    c.on('close', (code) => {
      const [status, bytes] = out.trim().split(' ').map(Number)
      if (code === 0) resolve({ status: status!, bytes: bytes! })
      else reject(new Error(`curl ${url} failed (exit ${code}): ${err.trim()}`))
    })
  })
}

/** Part 4; returns the exit code of its daemon. */
async function benchDownloads(ctx: CacheBenchContext, dir: string): Promise<number | null> {
  console.error(`[cache] a seeded ${BIG_BYTES / MiB} MiB file: import, then ${DOWNLOADS} concurrent curl downloads of its NAR from a fresh daemon (once)`)
  const file = path.join(dir, 'cb-1GiB.bin')
  makeBigFile(file, BIG_BYTES)
  const store = path.join(dir, 'store')
  const storePath = (await ctx.run('ours', ['import', '--store', store, file], { stdout: 'pipe' })).stdout.trim()
  const nixHash = (await ctx.run('nix', ['hash', 'path', '--type', 'sha256', '--base32', file], { stdout: 'pipe', program: 'nix' })).stdout.trim()
  fs.rmSync(file)
  const d = await startCacheDaemon(ctx, store)
  try {
    await measureDownloads(ctx, d, storePath, nixHash)
  } catch (e) {
    await d.stop()
    throw e
  }
  return d.stop()
}

/** The downloads from the fresh daemon `d` serving `storePath`, whose NAR hash Nix computed as `nixHash`. */
async function measureDownloads(ctx: CacheBenchContext, d: BenchDaemon & { http: string }, storePath: string, nixHash: string): Promise<void> {
  const narinfo = await (await fetch(`${d.http}/${path.basename(storePath).slice(0, 32)}.narinfo`)).text()
  const url = /^URL: (\S+)$/m.exec(narinfo)?.[1]
  const narSize = Number(/^NarSize: (\d+)$/m.exec(narinfo)?.[1])
  ctx.check(`cache: the served narinfo of the ${sizeText(BIG_BYTES)} path has the NarHash Nix computes for the file`, narinfo.includes(`\nNarHash: sha256:${nixHash}\n`) && url !== undefined, narinfo)
  const idle = procKiB(d.pid, 'VmRSS')
  const cpu0 = cpuSeconds(d.pid)
  const samples: { ms: number; kib: number }[] = []
  const t0 = performance.now()
  const timer = setInterval(() => {
    const v = procKiB(d.pid, 'VmRSS')
    if (v !== undefined) samples.push({ ms: performance.now() - t0, kib: v })
  }, 100)
  let got: { status: number; bytes: number }[]
  try {
    got = await Promise.all(Array.from({ length: DOWNLOADS }, () => curlToNull(`${d.http}/${url!}`)))
  } finally {
    clearInterval(timer)
  }
  const wall = performance.now() - t0
  const hwm = procKiB(d.pid, 'VmHWM')
  const cpu1 = cpuSeconds(d.pid)
  ctx.check(`cache: all ${DOWNLOADS} downloads got 200 and the whole NAR (${narSize} bytes)`, got.every((g) => g.status === 200 && g.bytes === narSize), JSON.stringify(got))
  const peak = Math.max(0, ...samples.map((s) => s.kib)) / 1024
  const half = (first: boolean) => Math.max(0, ...samples.filter((s) => s.ms < wall / 2 === first).map((s) => s.kib)) / 1024
  ctx.addRow(`${DOWNLOADS} concurrent NAR downloads of a ${sizeText(BIG_BYTES)} path (curl), aggregate`, 'MB/s', [mbps(DOWNLOADS * narSize, wall)])
  if (idle !== undefined) ctx.addRow('daemon RSS idle, before the downloads', 'MiB', [idle / 1024])
  ctx.addRow('daemon peak RSS during the downloads (VmRSS every 100 ms)', 'MiB', [peak], undefined, mibAtMost(200))
  if (hwm !== undefined) ctx.addRow('daemon peak RSS since its start (VmHWM)', 'MiB', [hwm / 1024], undefined, mibAtMost(200))
  ctx.note(
    `${DOWNLOADS} downloads of ${narSize} bytes each: ${(wall / 1000).toFixed(1)} s wall, daemon CPU ${cpu0 !== undefined && cpu1 !== undefined ? (cpu1 - cpu0).toFixed(1) : '?'} s; ` +
      `RSS max ${half(true).toFixed(1)} MiB in the first half, ${half(false).toFixed(1)} MiB in the second (flat when they are close), ${samples.length} samples`,
  )
}
