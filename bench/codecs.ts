/**
 * `node --import tsx bench/codecs.ts NAR_FILE`: how fast each way of
 * (de)compressing a NAR runs, per format: our codecs (src/codecs) against
 * in-process libraries, one fresh niced process per run so that peak RSS
 * is the run's own. Prints MiB/s of NAR (wall clock), CPU seconds (ours plus
 * any program we spawned) and peak RSS (our process; with GNU time also the
 * largest spawned program). Alternatives are measured when installed in
 * CODEC_ALTERNATIVES (a node_modules folder: `npm install lzma-native@8.0.6
 * fzstd@0.1.1 unbzip2-stream@1.4.3 @mongodb-js/zstd@1.2.2` in a temp dir);
 * absent ones are left out. BENCH_REPS runs per decompression case (default 3,
 * the median is shown), BENCH_COMPRESS_REPS per compression case (default 1:
 * xz and brotli take a minute of CPU each); BENCH_KEEP=1 keeps the compressed
 * inputs (NAR_FILE.bench/) for the next run. Decompression reads files written by the compression programs at
 * the levels Nix's libarchive uses (xz -6, zstd -3, bzip2 -9, gzip -6, lz4 -1).
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const HERE = fileURLToPath(import.meta.url)
const MiB = 1024 * 1024
const REPS = Math.max(1, Number(process.env.BENCH_REPS ?? 3))
const COMPRESS_REPS = Math.max(1, Number(process.env.BENCH_COMPRESS_REPS ?? 1))
/** BENCH_ONLY=REGEX: the cases whose "format direction implementation" matches. */
const ONLY = process.env.BENCH_ONLY ? new RegExp(process.env.BENCH_ONLY) : undefined
const GNU_TIME = spawnSync('/usr/bin/time', ['-f', '%M', 'true'], { stdio: 'ignore' }).status === 0

type Direction = 'decompress' | 'compress'
interface Case {
  format: string
  direction: Direction
  impl: string
}

const CASES: Case[] = [
  { format: 'xz', direction: 'decompress', impl: 'ours' },
  { format: 'xz', direction: 'decompress', impl: 'lzma-native' },
  { format: 'zstd', direction: 'decompress', impl: 'ours' },
  { format: 'zstd', direction: 'decompress', impl: 'fzstd' },
  { format: 'zstd', direction: 'decompress', impl: '@mongodb-js/zstd' },
  { format: 'bzip2', direction: 'decompress', impl: 'ours' },
  { format: 'bzip2', direction: 'decompress', impl: 'unbzip2-stream' },
  { format: 'gzip', direction: 'decompress', impl: 'ours' },
  { format: 'gzip', direction: 'decompress', impl: 'gzip -dc' },
  { format: 'br', direction: 'decompress', impl: 'ours' },
  { format: 'lz4', direction: 'decompress', impl: 'ours' },
  { format: 'xz', direction: 'compress', impl: 'ours' },
  { format: 'xz', direction: 'compress', impl: 'lzma-native' },
  { format: 'zstd', direction: 'compress', impl: 'ours' },
  { format: 'zstd', direction: 'compress', impl: '@mongodb-js/zstd' },
  { format: 'bzip2', direction: 'compress', impl: 'ours' },
  { format: 'gzip', direction: 'compress', impl: 'ours' },
  { format: 'gzip', direction: 'compress', impl: 'gzip -6' },
  { format: 'br', direction: 'compress', impl: 'ours' },
  { format: 'none', direction: 'compress', impl: 'ours' },
]

const PROGRAM_ARGS: Record<string, string[]> = {
  xz: ['xz', '-6', '-c'],
  zstd: ['zstd', '-3', '-c', '-q'],
  bzip2: ['bzip2', '-9', '-c'],
  gzip: ['gzip', '-6', '-c'],
  lz4: ['lz4', '-1', '-c'],
}

if (process.argv[2] === '--case') await runCase(JSON.parse(process.argv[3]!) as Case & { input: string })
else await main(process.argv[2])

async function main(nar: string | undefined): Promise<void> {
  if (!nar) throw new Error('usage: bench/codecs.ts NAR_FILE')
  const narSize = fs.statSync(nar).size
  // The compressed inputs are kept beside the NAR (NAR.bench/), made once: xz and brotli take minutes.
  const packedDir = `${nar}.bench`
  fs.mkdirSync(packedDir, { recursive: true })
  try {
    const packed: Record<string, string> = {}
    for (const [format, argv] of Object.entries(PROGRAM_ARGS)) {
      packed[format] = path.join(packedDir, `nar.${format}`)
      if (fs.existsSync(packed[format])) continue
      const r = spawnSync('sh', ['-c', 'out=$1; shift; "$@" < "$0" > "$out.tmp" && mv "$out.tmp" "$out"', nar, packed[format], ...argv])
      if (r.status !== 0) throw new Error(`${argv[0]} failed`)
    }
    packed.br = path.join(packedDir, 'nar.br')
    if (!fs.existsSync(packed.br)) await runCase({ format: 'br', direction: 'compress', impl: 'ours', input: nar, output: packed.br })
    console.log(`NAR: ${(narSize / MiB).toFixed(1)} MiB; median of ${REPS} runs (decompression), ${COMPRESS_REPS} (compression); MiB/s of NAR per second of wall clock and per CPU second (user+sys of node and the programs it spawned)`)
    console.log(['format', 'direction', 'implementation', 'MiB/s wall', 'MiB/s CPU', 'CPU s', 'RSS node MiB', 'RSS max MiB', 'output MiB'].join('\t'))
    for (const c of CASES) {
      if (ONLY && !ONLY.test(`${c.format} ${c.direction} ${c.impl}`)) continue
      const input = c.direction === 'decompress' ? packed[c.format]! : nar
      const runs: Measure[] = []
      for (let i = 0; i < (c.direction === 'decompress' ? REPS : COMPRESS_REPS); i++) {
        const m = measure({ ...c, input })
        if (!m) break
        runs.push(m)
      }
      if (runs.length === 0) {
        console.log([c.format, c.direction, c.impl, 'not installed'].join('\t'))
        continue
      }
      runs.sort((a, b) => a.wall - b.wall)
      const m = runs[Math.floor(runs.length / 2)]!
      const row = [c.format, c.direction, c.impl, (narSize / MiB / m.wall).toFixed(1), (narSize / MiB / m.cpu).toFixed(1), m.cpu.toFixed(2), (m.rssKiB / 1024).toFixed(0), m.maxKiB ? (m.maxKiB / 1024).toFixed(0) : '–', (m.outBytes / MiB).toFixed(1)]
      console.log(row.join('\t'))
    }
  } finally {
    if (process.env.BENCH_KEEP !== '1') fs.rmSync(packedDir, { recursive: true, force: true })
  }
}

interface Measure {
  wall: number
  cpu: number
  rssKiB: number
  maxKiB?: number
  outBytes: number
}

function measure(c: Case & { input: string }): Measure | undefined {
  const argv = [...process.execArgv, HERE, '--case', JSON.stringify(c)]
  const cmd = GNU_TIME ? ['/usr/bin/time', '-f', 'TIME %M', process.execPath, ...argv] : [process.execPath, ...argv]
  const r = spawnSync('nice', ['-n', '10', ...cmd], { encoding: 'utf8', maxBuffer: 16 * MiB })
  if (r.status === 3) return undefined
  if (r.status !== 0) throw new Error(`${c.format} ${c.direction} ${c.impl} failed: ${r.stderr}`)
  const m = JSON.parse(r.stdout.trim().split('\n').pop()!) as Measure
  const t = /TIME (\d+)/.exec(r.stderr)
  return { ...m, maxKiB: t ? Number(t[1]) : undefined }
}

/** One run in this process: the codec over the file, output counted (or written to `output`). */
async function runCase(c: Case & { input: string; output?: string }): Promise<void> {
  const { Writable } = await import('node:stream')
  const { pipeline } = await import('node:stream/promises')
  const step = await codec(c)
  if (!step) process.exit(3)
  let outBytes = 0
  const sink = c.output
    ? fs.createWriteStream(c.output)
    : new Writable({
        write(chunk: Buffer, _e, done) {
          outBytes += chunk.length
          done()
        },
      })
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const source = fs.createReadStream(c.input, { highWaterMark: MiB })
  if (typeof step === 'function') await pipeline(source, async function* (src: AsyncIterable<Buffer>) {
    yield* step(src)
  }, sink)
  else await pipeline(source, step, sink)
  const wall = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  if (c.output) return
  // Children's CPU (spawned programs, reaped by now): cutime + cstime of /proc/self/stat, in clock ticks.
  const stat = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')
  const childCpu = (Number(stat[13]) + Number(stat[14])) / 100
  console.log(JSON.stringify({ wall, cpu: (cpu.user + cpu.system) / 1e6 + childCpu, rssKiB: process.resourceUsage().maxRSS, outBytes }))
}

type Step = NodeJS.ReadWriteStream | ((src: AsyncIterable<Buffer>) => AsyncIterable<Uint8Array>)

async function codec(c: Case): Promise<Step | undefined> {
  const ours = await import('../src/codecs/index.js')
  const { childCodec } = await import('../src/codecs/child-codec.js')
  const zlib = await import('node:zlib')
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- untyped optional packages
  const alt = (name: string): any => {
    const dir = process.env.CODEC_ALTERNATIVES
    if (!dir) return undefined
    try {
      // A require rooted beside that node_modules resolves its packages.
      return createRequire(path.join(dir, '..', 'bench.js'))(name)
    } catch {
      return undefined
    }
  }
  if (c.impl === 'ours') return c.direction === 'compress' ? ours.compressor(c.format as never) : ours.decompressor(c.format)
  switch (`${c.format} ${c.direction} ${c.impl}`) {
    case 'gzip decompress gzip -dc':
      return childCodec('gzip', ['-dc'], 'gzip')
    case 'gzip compress gzip -6':
      return childCodec('gzip', ['-6', '-c'], 'gzip')
    case 'xz decompress lzma-native':
      return alt('lzma-native')?.createDecompressor()
    case 'xz compress lzma-native':
      return alt('lzma-native')?.createCompressor({ preset: 6 })
    case 'zstd decompress fzstd': {
      const fzstd = alt('fzstd')
      if (!fzstd) return undefined
      return async function* (src) {
        const out: Uint8Array[] = []
        const d = new fzstd.Decompress((chunk: Uint8Array) => out.push(chunk))
        for await (const chunk of src) {
          d.push(chunk)
          yield* out.splice(0)
        }
        d.push(new Uint8Array(0), true)
        yield* out.splice(0)
      }
    }
    case 'zstd decompress @mongodb-js/zstd': {
      // Buffers only: the whole compressed frame in memory, then the whole output.
      const z = alt('@mongodb-js/zstd')
      if (!z) return undefined
      return async function* (src) {
        const parts: Buffer[] = []
        for await (const chunk of src) parts.push(chunk)
        yield await z.decompress(Buffer.concat(parts))
      }
    }
    case 'zstd compress @mongodb-js/zstd': {
      // Frame by frame: each 1 MiB of input its own frame (concatenated frames are one valid zstd stream).
      const z = alt('@mongodb-js/zstd')
      if (!z) return undefined
      return async function* (src) {
        for await (const chunk of src) yield await z.compress(chunk, 3)
      }
    }
    case 'bzip2 decompress unbzip2-stream':
      return alt('unbzip2-stream')?.()
  }
  throw new Error(`no such case ${JSON.stringify(c)}`)
}

