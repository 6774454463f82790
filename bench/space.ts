/**
 * The space part of `npm run bench` (BENCH_PARTS=space): what two releases
 * of a realistic tree cost on disk, ours against nix-store.
 *
 * Input (seeded, generated under the bench's temp dir):
 *  - release 1: ~3,000 small source-like text files (0.2–20 KiB, log-uniform,
 *    from a word list with a Zipf-ish pick, so they compress like source) in
 *    ~150 directories, ~2% duplicates, a few executables and symlinks; plus 8
 *    large files: 4 compressible (a 12 MiB log, a 6 MiB bundle.js, a 5 MiB
 *    JSON fixture, a 3 MiB minified vendor.js) and 4 incompressible (3 × 8 MiB
 *    and 1 × 2 MiB seeded random "assets").
 *  - release 2: a copy with ~2% of the small files edited, a few added, a few
 *    deleted, and every large file changed at 3–5 small spots (overwrites and
 *    insertions of 20–500 bytes).
 *
 * Measured: disk used by our store after importing release 1, then after
 * importing release 2 into the same store; the same for `nix-store --add`
 * into a private `local?root=DIR` store (DIR/nix/store). Disk is given two
 * ways: the sum of the sizes of the regular files, and `du -sk` (blocks,
 * directories included). Also: our files per distinct input object (file
 * contents + directories, both releases), that every small content is one
 * plain blob and every large content one .pack, and the import times of
 * both releases (median of BENCH_REPS pairs of imports, each pair into a
 * fresh store, tools alternating; the space figures come from the first
 * pair and are checked to be the same in every pair).
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { createHash } from 'node:crypto'
import zlib from 'node:zlib'
import { blake3 } from '@napi-rs/blake-hash'
import { readBundleIndex } from '../src/backends/local/bundle.js'
import { randomBytes, rng } from '../test/helpers/trees.js'
import { sized } from './quick.js'

const KiB = 1024
const MiB = 1024 * KiB
/** Our local store keeps contents up to this size as plain files, larger ones as packs (README, "Local store layout"). */
const SMALL_MAX = 1 * MiB

type Tool = 'ours' | 'nix'

export type SpaceUnit = 'MiB' | 'count' | 'x' | 's'

export interface SpaceRow {
  figure: string
  unit: SpaceUnit
  /** Our figure; Nix's on the row that compares nix-store with the input (`subject: 'nix'`). */
  ours: number
  subject?: 'nix'
  reference?: number
  /** What the reference column is: 'nix' (nix-store) or 'input' (the generated tree). */
  referenceOf?: 'nix' | 'input'
  /** ours / reference. */
  ratio?: number
  target?: string
  met?: boolean
}

export interface SpaceBenchContext {
  tmpRoot: string
  /** Timed runs per tool (the space figures come from the first, and must be the same in all). */
  reps: number
  /** Runs our CLI or nix-store (wall time spawn → exit); rejects on a non-zero exit. */
  run(tool: Tool, args: string[], stdout: 'pipe' | 'hash' | number): Promise<{ ms: number; stdout: string; sha256?: string }>
  check(name: string, ok: boolean, detail: string): void
  rmTree(p: string): void
}

export interface SpaceResult {
  rows: SpaceRow[]
  notes: string[]
  input: Record<string, unknown>
  /** ms of every import, per release and tool. */
  timing: Record<string, { ours: number[]; nix: number[] }>
  seconds: number
}

// ---------------------------------------------------------------- text

const BASE_WORDS = (
  'const let return function import export from if else for while await async new this true false null undefined ' +
  'string number value result error data config options request response user item index list map key name type ' +
  'path file state props render handle update create delete get set init load parse format buffer stream event ' +
  'node child parent size count offset length start end module default class extends super static private public ' +
  'interface readonly promise resolve reject callback timeout cache store query filter reduce join split trim'
).split(' ')
const SYLLABLES = 'ka lo mi ne ra tu ver sto pa den ix qu zen bor fi gal hut jor mex nu ol pri sel tam un vo wex yan cor dis emb flo gri'.split(' ')

/** ~1,600 words: common programming words first, then seeded made-up ones. */
function makeWords(): string[] {
  const r = rng(0x3a1d)
  const made = new Set<string>()
  while (made.size < 1500) {
    const n = 1 + Math.floor(r() * 3)
    let w = ''
    for (let i = 0; i < n; i++) w += SYLLABLES[Math.floor(r() * SYLLABLES.length)]!
    if (!BASE_WORDS.includes(w)) made.add(w)
  }
  return [...BASE_WORDS, ...made]
}
const WORDS = makeWords()

/** Generates text from a seeded PRNG: words picked Zipf-like, so frequent ones dominate as in real source. */
class Text {
  private readonly r: () => number
  constructor(seed: number) {
    this.r = rng(seed)
  }
  int(n: number): number {
    return Math.floor(this.r() * n)
  }
  chance(p: number): boolean {
    return this.r() < p
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!
  }
  word(): string {
    return WORDS[Math.floor(WORDS.length * this.r() ** 2.5)]!
  }
  ident(): string {
    const n = 1 + this.int(3)
    let s = this.word()
    for (let i = 1; i < n; i++) {
      const w = this.word()
      s += w[0]!.toUpperCase() + w.slice(1)
    }
    return s
  }
  words(n: number): string {
    const out: string[] = []
    for (let i = 0; i < n; i++) out.push(this.word())
    return out.join(' ')
  }
  value(): string {
    switch (this.int(5)) {
      case 0:
        return String(this.int(1000))
      case 1:
        return `'${this.words(1 + this.int(3))}'`
      case 2:
        return this.chance(0.5) ? 'true' : 'null'
      default:
        return `${this.ident()}.${this.ident()}(${this.ident()})`
    }
  }

  /** One line of a source-like file of extension `ext`; `depth` is the current nesting. */
  line(ext: string, depth: { d: number }): string {
    const ind = '  '.repeat(depth.d)
    switch (ext) {
      case '.json':
        return `  "${this.ident()}": ${this.chance(0.5) ? `"${this.words(1 + this.int(4))}"` : this.int(100_000)},`
      case '.md':
        return this.chance(0.1) ? `## ${this.words(2 + this.int(4))}` : `${this.words(6 + this.int(14))}.`
      case '.css':
        return `.${this.ident()} { ${this.word()}-${this.word()}: ${this.int(64)}px; ${this.word()}: #${this.int(0xffffff).toString(16).padStart(6, '0')}; }`
      case '.sh':
        return `${this.ident()}=$(${this.word()} --${this.word()} "${this.words(2)}") || exit ${this.int(4)}`
      default: {
        const roll = this.r()
        if (depth.d > 0 && roll < 0.12) {
          depth.d--
          return `${'  '.repeat(depth.d)}}`
        }
        if (depth.d < 4 && roll < 0.25) {
          depth.d++
          return depth.d === 1
            ? `export ${this.chance(0.3) ? 'async ' : ''}function ${this.ident()}(${this.ident()}, ${this.ident()}) {`
            : `${ind}${this.pick(['if', 'for', 'while'])} (${this.ident()} ${this.pick(['===', '!==', '<', '>='])} ${this.value()}) {`
        }
        if (roll < 0.35) return `${ind}// ${this.words(3 + this.int(9))}`
        if (roll < 0.45) return `${ind}return ${this.value()}`
        if (depth.d === 0 && roll < 0.55) return `import { ${this.ident()}, ${this.ident()} } from './${this.word()}/${this.ident()}.js'`
        return `${ind}${this.pick(['const', 'let', 'await'])} ${this.ident()} = ${this.value()}`
      }
    }
  }

  /** A source-like file of about `bytes` bytes (exactly, ASCII). */
  source(ext: string, bytes: number): string {
    const lines: string[] = []
    const depth = { d: 0 }
    let n = 0
    if (ext === '.json') {
      lines.push('{')
      n += 2
    }
    while (n < bytes) {
      const l = this.line(ext, depth)
      lines.push(l)
      n += l.length + 1
    }
    return (lines.join('\n') + '\n').slice(0, bytes)
  }

  logLine(t: { ms: number }): string {
    t.ms += this.int(400)
    const level = this.pick(['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR'])
    const status = this.pick([200, 200, 200, 201, 204, 304, 404, 500])
    return `${new Date(t.ms).toISOString()} ${level} [${this.pick(['api', 'worker', 'auth', 'cache'])}-${this.int(8)}] ${this.pick(['GET', 'GET', 'POST', 'PUT', 'DELETE'])} /${this.word()}/${this.word()}/${this.int(100_000)} ${status} ${this.int(900)}ms ${this.words(2 + this.int(8))}`
  }

  fixture(id: number): string {
    const tags = Array.from({ length: 1 + this.int(4) }, () => `"${this.word()}"`).join(', ')
    return `  {"id": ${id}, "name": "${this.ident()}", "title": "${this.words(3 + this.int(6))}", "tags": [${tags}], "score": ${(this.r() * 100).toFixed(2)}, "active": ${this.chance(0.7)}},`
  }
}

/** `bytes` of text made of `piece()` outputs joined by newlines. */
function textOf(bytes: number, piece: () => string): Buffer {
  const parts: string[] = []
  let n = 0
  while (n < bytes) {
    const p = piece()
    parts.push(p)
    n += p.length + 1
  }
  return Buffer.from((parts.join('\n') + '\n').slice(0, bytes), 'latin1')
}

// ---------------------------------------------------------------- the tree

interface LargeSpec {
  rel: string
  bytes: number
  compressible: boolean
  make: (bytes: number, seed: number) => Buffer
}

const LARGE: LargeSpec[] = [
  {
    rel: 'logs/server.log',
    bytes: 12 * MiB,
    compressible: true,
    make: (n, seed) => {
      const t = new Text(seed)
      const clock = { ms: Date.UTC(2024, 2, 1) }
      return textOf(n, () => t.logLine(clock))
    },
  },
  {
    rel: 'dist/bundle.js',
    bytes: 6 * MiB,
    compressible: true,
    make: (n, seed) => {
      const t = new Text(seed)
      let m = 0
      return textOf(n, () => `/***/ "./src/${t.word()}/${t.ident()}.js": (function (module, exports, require) {\n${t.source('.js', 2 * KiB + t.int(18 * KiB))}}), // ${m++}`)
    },
  },
  {
    rel: 'data/fixtures.json',
    bytes: 5 * MiB,
    compressible: true,
    make: (n, seed) => {
      const t = new Text(seed)
      let id = 0
      return textOf(n, () => t.fixture(id++))
    },
  },
  {
    rel: 'dist/vendor.min.js',
    bytes: 3 * MiB,
    compressible: true,
    make: (n, seed) => {
      const t = new Text(seed)
      return textOf(n, () => t.source('.js', 8 * KiB).replace(/\n\s*/g, ';'))
    },
  },
  { rel: 'assets/hero.webp', bytes: 8 * MiB, compressible: false, make: (n, seed) => randomBytes(n, seed) },
  { rel: 'assets/intro.mp4', bytes: 8 * MiB, compressible: false, make: (n, seed) => randomBytes(n, seed) },
  { rel: 'assets/textures.bin', bytes: 8 * MiB, compressible: false, make: (n, seed) => randomBytes(n, seed) },
  { rel: 'assets/fonts/icons.woff2', bytes: 2 * MiB, compressible: false, make: (n, seed) => randomBytes(n, seed) },
]

/** 3,000 small files in 150 directories (300 in 30 under BENCH_QUICK=1). */
const SMALL_FILES = sized(3000, 300)
const DIRS = sized(150, 30)
const EXTS = ['.ts', '.ts', '.js', '.js', '.json', '.md', '.css', '.sh']

/** 0.2–20 KiB, log-uniform. */
const smallSize = (r: () => number) => Math.round(200 * Math.exp(r() * Math.log((20 * KiB) / 200)))

function writeSmall(p: string, seed: number, r: () => number): void {
  const ext = path.extname(p)
  fs.writeFileSync(p, new Text(seed).source(ext, smallSize(r)))
  if (ext === '.sh') fs.chmodSync(p, 0o755)
}

/** Release 1 at `root`. */
export function makeRelease1(root: string): void {
  const r = rng(0x51ace)
  const t = new Text(0x51ace + 1)
  fs.mkdirSync(root, { recursive: true })
  const fixed = [...new Set(LARGE.map((l) => path.dirname(l.rel)))].flatMap((d) => d.split('/').map((_, i, a) => a.slice(0, i + 1).join('/')))
  const dirs = [root, ...[...new Set(fixed)].map((d) => path.join(root, d))]
  for (const d of dirs) fs.mkdirSync(d, { recursive: true })
  const top = ['src', 'lib', 'test', 'docs', 'scripts', 'packages']
  for (const d of top) {
    fs.mkdirSync(path.join(root, d))
    dirs.push(path.join(root, d))
  }
  // Nested source directories: each under a random earlier one (never under the asset/log folders).
  const sourceDirs = dirs.filter((d) => d === root || top.some((x) => d.startsWith(path.join(root, x))))
  for (let i = 0; dirs.length < DIRS; i++) {
    const parent = sourceDirs[1 + Math.floor(r() * (sourceDirs.length - 1))]!
    const d = path.join(parent, `${t.word()}-${i}`)
    fs.mkdirSync(d)
    dirs.push(d)
    sourceDirs.push(d)
  }
  const files: string[] = []
  for (let i = 0; i < SMALL_FILES; i++) {
    const dir = i < sourceDirs.length ? sourceDirs[i]! : sourceDirs[Math.floor(r() * sourceDirs.length)]!
    const ext = EXTS[Math.floor(r() * EXTS.length)]!
    const p = path.join(dir, `${t.ident()}-${i}${ext}`)
    if (files.length > 0 && r() < 0.02) fs.copyFileSync(files[Math.floor(r() * files.length)]!, p) // LICENSE-like duplicates
    else writeSmall(p, 0x10_0000 + i, r)
    files.push(p)
  }
  // node_modules/.bin-like relative symlinks.
  const bin = path.join(root, 'scripts', '.bin')
  fs.mkdirSync(bin)
  for (let i = 0; i < 10; i++) {
    const target = files[Math.floor(r() * files.length)]!
    fs.symlinkSync(path.relative(bin, target), path.join(bin, `${t.word()}-${i}`))
  }
  LARGE.forEach((l, i) => fs.writeFileSync(path.join(root, l.rel), l.make(l.bytes, 0x1a_0000 + i)))
}

function listFiles(root: string, out: string[] = []): string[] {
  for (const e of fs.readdirSync(root, { withFileTypes: true })) {
    const p = path.join(root, e.name)
    if (e.isDirectory()) listFiles(p, out)
    else if (e.isFile()) out.push(p)
  }
  return out
}

interface Edits {
  edited: number
  added: number
  deleted: number
  largeSpots: number
}

/** Release 2: a copy of release 1 with small differences. */
export function makeRelease2(r1: string, r2: string): Edits {
  fs.cpSync(r1, r2, { recursive: true, verbatimSymlinks: true })
  const r = rng(0x2e1ea5e)
  const t = new Text(0x2e1ea5e + 1)
  const small = listFiles(r2)
    .filter((p) => fs.statSync(p).size <= SMALL_MAX)
    .sort()
  const edits: Edits = { edited: 0, added: 0, deleted: 0, largeSpots: 0 }
  // ~2% edited: a line replaced, a few inserted, or some appended.
  const toEdit = new Set<string>()
  while (toEdit.size < Math.round(small.length * 0.02)) toEdit.add(small[Math.floor(r() * small.length)]!)
  for (const p of toEdit) {
    const lines = fs.readFileSync(p, 'latin1').split('\n')
    const ext = path.extname(p)
    const at = Math.floor(r() * lines.length)
    const depth = { d: 1 }
    const kind = Math.floor(r() * 3)
    if (kind === 0) lines[at] = t.line(ext, depth)
    else if (kind === 1) lines.splice(at, 0, ...Array.from({ length: 1 + Math.floor(r() * 5) }, () => t.line(ext, depth)))
    else lines.push(...Array.from({ length: 1 + Math.floor(r() * 10) }, () => t.line(ext, depth)))
    fs.writeFileSync(p, lines.join('\n'))
    edits.edited++
  }
  // A few deleted (not among the edited), a few added.
  const rest = small.filter((p) => !toEdit.has(p))
  for (let i = 0; i < 8; i++) {
    const p = rest.splice(Math.floor(r() * rest.length), 1)[0]!
    fs.rmSync(p)
    edits.deleted++
  }
  for (let i = 0; i < 12; i++) {
    const dir = path.dirname(small[Math.floor(r() * small.length)]!)
    writeSmall(path.join(dir, `${t.ident()}-new${i}${EXTS[Math.floor(r() * EXTS.length)]!}`), 0x20_0000 + i, r)
    edits.added++
  }
  // Every large file: 3–5 spots, each an overwrite or an insertion of 20–500 bytes.
  LARGE.forEach((l, i) => {
    const p = path.join(r2, l.rel)
    let buf = fs.readFileSync(p)
    const spots = 3 + Math.floor(r() * 3)
    const offsets = Array.from({ length: spots }, () => Math.floor(r() * buf.length)).sort((a, b) => b - a)
    for (const [k, off] of offsets.entries()) {
      const n = 20 + Math.floor(r() * 481)
      const bytes = l.compressible ? Buffer.from(new Text(0x30_0000 + i * 16 + k).source('.js', n), 'latin1') : randomBytes(n, 0x30_0000 + i * 16 + k)
      if (r() < 0.5) bytes.copy(buf, off, 0, Math.min(n, buf.length - off))
      else buf = Buffer.concat([buf.subarray(0, off), bytes, buf.subarray(off)])
      edits.largeSpots++
    }
    fs.writeFileSync(p, buf)
  })
  return edits
}

// ---------------------------------------------------------------- the input's objects

interface InputObjects {
  /** BLAKE3 hex of each distinct file content → size. */
  contents: Map<string, number>
  /** Merkle digests of the distinct directories (a directory's identity is its entries, recursively; not its own name). */
  dirs: Set<string>
  /** Per release: bytes and files. */
  bytes: number
  files: number
  directories: number
  symlinks: number
}

function collect(root: string, objs: InputObjects): string {
  const entries: string[] = []
  for (const name of fs.readdirSync(root).sort()) {
    const p = path.join(root, name)
    const st = fs.lstatSync(p)
    if (st.isSymbolicLink()) {
      entries.push(`l ${name} ${fs.readlinkSync(p)}`)
      objs.symlinks++
    } else if (st.isDirectory()) {
      entries.push(`d ${name} ${collect(p, objs)}`)
    } else {
      const data = fs.readFileSync(p)
      const hex = blake3(data).toString('hex')
      objs.contents.set(hex, data.length)
      objs.bytes += data.length
      objs.files++
      entries.push(`f ${name} ${hex} ${data.length} ${st.mode & 0o100 ? 'x' : '-'}`)
    }
  }
  objs.directories++
  const digest = createHash('sha256').update(entries.join('\n')).digest('hex')
  objs.dirs.add(digest)
  return digest
}

// ---------------------------------------------------------------- disk

interface Disk {
  /** Sum of the sizes of regular files. */
  bytes: number
  /** `du -sk`, in bytes. */
  du: number
}

function fileBytes(root: string): number {
  let n = 0
  for (const e of fs.readdirSync(root, { withFileTypes: true })) {
    const p = path.join(root, e.name)
    if (e.isDirectory()) n += fileBytes(p)
    else if (e.isFile()) n += fs.lstatSync(p).size
  }
  return n
}

function du(root: string): number {
  const r = spawnSync('du', ['-sk', root], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`du -sk ${root} failed: ${r.stderr}`)
  return Number(r.stdout.split('\t')[0]) * KiB
}

const disk = (root: string): Disk => ({ bytes: fileBytes(root), du: du(root) })

interface OurFile {
  kind: 'plain' | 'pack' | 'bundle' | 'dir' | 'pathinfo'
  name: string
  bytes: number
}

/** The objects of our store (blobs/, dirs/, pathinfo/; not tmp/ or the marker). */
function ourFiles(store: string): Map<string, OurFile> {
  const out = new Map<string, OurFile>()
  const walk = (dir: string, kind: (name: string) => OurFile['kind']) => {
    if (!fs.existsSync(dir)) return
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) walk(p, kind)
      else out.set(path.relative(store, p), { kind: kind(e.name), name: e.name, bytes: fs.lstatSync(p).size })
    }
  }
  walk(path.join(store, 'blobs'), (n) => (n.endsWith('.pack') ? 'pack' : n.endsWith('.bundle') ? 'bundle' : 'plain'))
  walk(path.join(store, 'dirs'), () => 'dir')
  walk(path.join(store, 'pathinfo'), () => 'pathinfo')
  return out
}

function summarize(files: Iterable<OurFile>): Record<OurFile['kind'], { n: number; bytes: number }> {
  const s = { plain: { n: 0, bytes: 0 }, pack: { n: 0, bytes: 0 }, bundle: { n: 0, bytes: 0 }, dir: { n: 0, bytes: 0 }, pathinfo: { n: 0, bytes: 0 } }
  for (const f of files) {
    s[f.kind].n++
    s[f.kind].bytes += f.bytes
  }
  return s
}

// ---------------------------------------------------------------- table

function fmt(v: number | undefined, unit: SpaceUnit): string {
  if (v === undefined) return '–'
  if (unit === 'MiB') return `${(v / MiB).toFixed(1)} MiB`
  if (unit === 's') return `${(v / 1000).toFixed(3)} s`
  if (unit === 'x') return `${v.toFixed(3)}×`
  return String(v)
}

export function spaceTable(rows: SpaceRow[]): string {
  const head = ['figure', 'tvix-store', 'reference (nix-store or input)', 'ratio', 'target', 'met?']
  const body = rows.map((r) => [
    r.figure,
    `${r.subject ? `${r.subject} ` : ''}${fmt(r.ours, r.unit)}`,
    r.reference === undefined ? '–' : `${r.referenceOf} ${fmt(r.reference, r.unit)}`,
    r.ratio === undefined ? '–' : r.ratio.toFixed(3),
    r.target ?? '–',
    r.met === undefined ? '–' : r.met ? 'yes' : 'no',
  ])
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i >= 4 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' | ')
  return [line(head), w.map((n) => '-'.repeat(n)).join('-|-'), ...body.map(line)].join('\n')
}

// ---------------------------------------------------------------- the bench

export async function benchSpace(ctx: SpaceBenchContext): Promise<SpaceResult> {
  const t0 = performance.now()
  const rows: SpaceRow[] = []
  const notes: string[] = []
  const base = path.join(ctx.tmpRoot, 'space')
  const r1 = path.join(base, 'inputs-1', 'app-1.0.0')
  const r2 = path.join(base, 'inputs-2', 'app-1.0.1')
  console.error('[space] generating two releases')
  makeRelease1(r1)
  const edits = makeRelease2(r1, r2)
  spawnSync('sync')
  const objs: InputObjects = { contents: new Map(), dirs: new Set(), bytes: 0, files: 0, directories: 0, symlinks: 0 }
  collect(r1, objs)
  const rel1 = { bytes: objs.bytes, files: objs.files, directories: objs.directories, symlinks: objs.symlinks, contents: new Map(objs.contents) }
  objs.bytes = objs.files = objs.directories = objs.symlinks = 0
  collect(r2, objs) // also reads release 2 once, so the timed imports start on a warm page cache
  const rel2 = { bytes: objs.bytes, files: objs.files, directories: objs.directories, symlinks: objs.symlinks }
  const smallDigests = new Set([...objs.contents].filter(([, n]) => n <= SMALL_MAX).map(([h]) => h))
  const largeDigests = new Set([...objs.contents].filter(([, n]) => n > SMALL_MAX).map(([h]) => h))
  const distinct = objs.contents.size + objs.dirs.size
  const genSeconds = (performance.now() - t0) / 1000
  const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`
  notes.push(
    `input: release 1 = ${rel1.files} files (${LARGE.length} large), ${rel1.symlinks} symlinks, ${rel1.directories} dirs, ${mib(rel1.bytes)}; ` +
      `release 2 = ${edits.edited} small files edited, ${edits.added} added, ${edits.deleted} deleted, ${edits.largeSpots} spots changed in the ${LARGE.length} large files, ${mib(rel2.bytes)}; ` +
      `distinct across both: ${smallDigests.size} small contents, ${largeDigests.size} large, ${objs.dirs.size} directories (generated in ${genSeconds.toFixed(1)} s)`,
  )
  console.error(`[space] ${notes[0]}`)

  // ---- both tools, REPS pairs of imports (release 1 into a fresh store, then release 2 into the same store)
  interface Pair {
    store: string
    /** Where to measure disk: our store dir, or DIR/nix/store. */
    measured: string
    ms: [number, number]
    paths: [string, string]
    disk: [Disk, Disk]
    files?: [Map<string, OurFile>, Map<string, OurFile>]
  }
  const pairs: Record<Tool, Pair[]> = { ours: [], nix: [] }
  const importArgs = (tool: Tool, store: string, tree: string) => (tool === 'ours' ? ['import', '--store', store, tree] : ['--store', `local?root=${store}`, '--add', tree])
  console.error(`[space] ${ctx.reps} × per tool: import release 1 into a fresh store, then release 2 into the same store`)
  for (let rep = 0; rep < ctx.reps; rep++) {
    const order: Tool[] = rep % 2 === 0 ? ['ours', 'nix'] : ['nix', 'ours']
    for (const tool of order) {
      const store = path.join(base, `store-${tool}-${rep}`)
      const measured = tool === 'ours' ? store : path.join(store, 'nix/store')
      const a = await ctx.run(tool, importArgs(tool, store, r1), 'pipe')
      const d1 = disk(measured)
      const f1 = tool === 'ours' ? ourFiles(store) : undefined
      const b = await ctx.run(tool, importArgs(tool, store, r2), 'pipe')
      const d2 = disk(measured)
      const f2 = tool === 'ours' ? ourFiles(store) : undefined
      pairs[tool].push({ store, measured, ms: [a.ms, b.ms], paths: [a.stdout.trim(), b.stdout.trim()], disk: [d1, d2], files: f1 && f2 ? [f1, f2] : undefined })
    }
    // Keep the first pair's stores for the checks below.
    if (rep > 0 && !process.env.BENCH_KEEP) for (const tool of ['ours', 'nix'] as const) ctx.rmTree(pairs[tool][rep]!.store)
  }
  const [o, n] = [pairs.ours[0]!, pairs.nix[0]!]
  const ours = o.store
  const [oDisk1, oDisk2] = o.disk
  const [oFiles1, oFiles2] = o.files!
  const [nDisk1, nDisk2] = n.disk
  const nixDb = disk(path.join(n.store, 'nix/var'))
  const sameBytes = (t: Tool) => pairs[t].every((p) => p.disk[0].bytes === pairs[t][0]!.disk[0].bytes && p.disk[1].bytes === pairs[t][0]!.disk[1].bytes)
  ctx.check(
    `space: the same input gives the same stored bytes in each of the ${ctx.reps} fresh stores (ours and nix)`,
    sameBytes('ours') && sameBytes('nix'),
    `ours ${pairs.ours.map((p) => p.disk.map((d) => d.bytes).join('/')).join(', ')}; nix ${pairs.nix.map((p) => p.disk.map((d) => d.bytes).join('/')).join(', ')}`,
  )

  // ---- correctness: same store paths as Nix, and the NARs read back from our store match nix-store --dump.
  const paths = [...o.paths, ...n.paths]
  const allPaths = [...pairs.ours, ...pairs.nix].map((p) => p.paths.join(' '))
  ctx.check(
    'space: both releases get the same store paths from ours and nix-store (every run)',
    allPaths.every((x) => x === allPaths[0]) && paths[0] !== paths[1],
    `ours ${[...new Set(pairs.ours.map((p) => p.paths.join(', ')))].join('; ')} vs nix ${[...new Set(pairs.nix.map((p) => p.paths.join(', ')))].join('; ')}`,
  )
  for (const [i, tree] of [r1, r2].entries()) {
    const a = await ctx.run('ours', ['export-nar', '--store', ours, paths[i]!], 'hash')
    const b = await ctx.run('nix', ['--dump', tree], 'hash')
    ctx.check(`space: export-nar of release ${i + 1} from the two-release store equals nix-store --dump`, a.sha256 === b.sha256, `sha256 ours ${a.sha256} vs nix ${b.sha256}`)
  }

  // ---- what our store holds
  const all = [...oFiles2.values()]
  const plain = all.filter((f) => f.kind === 'plain')
  const packs = all.filter((f) => f.kind === 'pack')
  const plainNames = new Set(plain.map((f) => f.name))
  const packNames = new Set(packs.map((f) => f.name.slice(0, -'.pack'.length)))
  const same = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((x) => b.has(x))
  const bigPlain = plain.filter((f) => f.bytes > SMALL_MAX)
  // Format 4: an import's small contents after its first few are members of its bundle, not plain files.
  const members = [...oFiles2.entries()].filter(([, f]) => f.kind === 'bundle').flatMap(([rel, f]) => [...(readBundleIndex(path.join(ours, rel), f.name.slice(0, -'.bundle'.length))?.members() ?? [])].map((m) => m.hex))
  const smallStored = [...plainNames, ...members]
  const smallNames = new Set(smallStored)
  ctx.check(
    'space: every distinct small content (≤ 1 MiB) is stored once, as a plain blob or a bundle member, and nothing else is',
    same(smallNames, smallDigests) && smallStored.length === smallNames.size && bigPlain.length === 0,
    `${plainNames.size} plain blobs (${bigPlain.length} over 1 MiB) and ${members.length} bundle members for ${smallDigests.size} distinct small contents; ${[...smallDigests].filter((h) => !smallNames.has(h)).length} small contents not stored`,
  )
  ctx.check(
    'space: every distinct large content is one .pack, and there is no other .pack',
    same(packNames, largeDigests),
    `${packNames.size} packs for ${largeDigests.size} distinct large contents; ${[...packNames].filter((h) => smallDigests.has(h)).length} packs are of small contents`,
  )

  // ---- space breakdown
  const s1 = summarize(oFiles1.values())
  const added = summarize([...oFiles2].filter(([k]) => !oFiles1.has(k)).map(([, f]) => f))
  const s2 = summarize(all)
  const large1 = LARGE.map((l) => ({ ...l, digest: blake3(fs.readFileSync(path.join(r1, l.rel))).toString('hex') }))
  const packOf = (hex: string) => [...oFiles1.values()].find((f) => f.name === `${hex}.pack`)?.bytes ?? NaN
  const group = (compressible: boolean) => {
    const ls = large1.filter((l) => l.compressible === compressible)
    return { raw: ls.reduce((a, l) => a + l.bytes, 0), stored: ls.reduce((a, l) => a + packOf(l.digest), 0) }
  }
  const comp = group(true)
  const incomp = group(false)
  const deflated6 = large1.filter((l) => l.compressible).reduce((a, l) => a + zlib.deflateRawSync(fs.readFileSync(path.join(r1, l.rel)), { level: 6 }).length, 0)
  const smallRaw1 = [...rel1.contents].filter(([, n]) => n <= SMALL_MAX).reduce((a, [, n]) => a + n, 0)
  const smallAll1 = rel1.bytes - LARGE.reduce((a, l) => a + l.bytes, 0)
  const largeRaw2 = [...largeDigests].filter((h) => !rel1.contents.has(h)).reduce((a, h) => a + objs.contents.get(h)!, 0)
  const kib = (n: number) => `${(n / KiB).toFixed(0)} KiB`
  notes.push(
    `ours after release 1: ${s1.plain.n} plain blobs ${mib(s1.plain.bytes)}, ${s1.pack.n} packs ${mib(s1.pack.bytes)}, ${s1.dir.n} dirs ${kib(s1.dir.bytes)}, ${s1.pathinfo.n} pathinfo; du ${mib(oDisk1.du)}`,
    `ours, added by release 2: ${added.plain.n} plain blobs ${kib(added.plain.bytes)}, ${added.pack.n} packs ${kib(added.pack.bytes)} (for ${mib(largeRaw2)} of changed large files), ${added.dir.n} dirs ${kib(added.dir.bytes)}, ${added.pathinfo.n} pathinfo; du +${kib(oDisk2.du - oDisk1.du)}`,
    `nix-store: release 1 ${mib(nDisk1.bytes)} (du ${mib(nDisk1.du)}), release 2 adds ${mib(nDisk2.bytes - nDisk1.bytes)} (du +${mib(nDisk2.du - nDisk1.du)}); its database (DIR/nix/var, not counted) du ${mib(nixDb.du)}`,
    `compressible large files of release 1: raw ${mib(comp.raw)}, our packs ${mib(comp.stored)} (chunk-wise deflate level 1), whole-file deflate level 6 would be ${mib(deflated6)}; ` +
      `small files are stored as they are: ${mib(smallRaw1)} of distinct small contents (${mib(smallAll1)} with duplicates) → ${mib(s1.plain.bytes)} of plain blobs`,
  )

  // ---- rows
  const row = (figure: string, unit: SpaceUnit, v: number, ref?: number, referenceOf?: 'nix' | 'input', target?: { text: string; ok: (r: SpaceRow) => boolean }) => {
    const r: SpaceRow = { figure, unit, ours: v, reference: ref, referenceOf, ratio: ref ? v / ref : undefined }
    if (target) {
      r.target = target.text
      r.met = target.ok(r)
    }
    rows.push(r)
  }
  row('one release on disk (file sizes)', 'MiB', oDisk1.bytes, nDisk1.bytes, 'nix')
  row('one release on disk (du -sk)', 'MiB', oDisk1.du, nDisk1.du, 'nix')
  row('two releases on disk (file sizes)', 'MiB', oDisk2.bytes, nDisk2.bytes, 'nix')
  row('two releases on disk (du -sk)', 'MiB', oDisk2.du, nDisk2.du, 'nix')
  const growth = { text: 'ours ≤ 1.15×', ok: (r: SpaceRow) => r.ours <= 1.15 }
  row('two releases / one release (file sizes)', 'x', oDisk2.bytes / oDisk1.bytes, nDisk2.bytes / nDisk1.bytes, 'nix', growth)
  row('two releases / one release (du -sk)', 'x', oDisk2.du / oDisk1.du, nDisk2.du / nDisk1.du, 'nix', growth)
  row('one release stored vs input size: ours', 'MiB', oDisk1.bytes, rel1.bytes, 'input')
  row('one release stored vs input size: nix-store', 'MiB', nDisk1.bytes, rel1.bytes, 'input')
  rows[rows.length - 1]!.subject = 'nix'
  row('compressible large files (rel. 1): packs vs raw', 'MiB', comp.stored, comp.raw, 'input', { text: 'ratio < 1', ok: (r) => r.ratio! < 1 })
  row('incompressible large files (rel. 1): packs vs raw', 'MiB', incomp.stored, incomp.raw, 'input', { text: 'ratio ≤ 1.01', ok: (r) => r.ratio! <= 1.01 })
  row('small files (rel. 1): plain blobs and bundles vs raw', 'MiB', s1.plain.bytes + s1.bundle.bytes, smallAll1, 'input')
  const objects = s2.plain.n + s2.pack.n + s2.bundle.n + s2.dir.n + s2.pathinfo.n
  row('store files vs distinct input objects (2 releases)', 'count', objects, distinct, 'input', { text: 'ratio ≤ 1.3', ok: (r) => r.ratio! <= 1.3 })
  row('dirs/ files vs distinct directories', 'count', s2.dir.n, objs.dirs.size, 'input', { text: 'ratio = 1', ok: (r) => r.ours === r.reference })
  row('plain blobs + bundle members vs distinct small contents', 'count', smallStored.length, smallDigests.size, 'input', { text: 'ratio = 1', ok: (r) => r.ours === r.reference && same(smallNames, smallDigests) })
  row('.pack files vs distinct large contents', 'count', s2.pack.n, largeDigests.size, 'input', { text: 'ratio = 1', ok: (r) => r.ours === r.reference && same(packNames, largeDigests) })
  const med = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b)
    return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
  }
  const times = (t: Tool, i: 0 | 1) => pairs[t].map((p) => p.ms[i])
  row('import release 1 into a fresh store', 's', med(times('ours', 0)), med(times('nix', 0)), 'nix')
  row('import release 2 into the release-1 store', 's', med(times('ours', 1)), med(times('nix', 1)), 'nix')
  const timing = { release1: { ours: times('ours', 0), nix: times('nix', 0) }, release2: { ours: times('ours', 1), nix: times('nix', 1) } }

  if (!process.env.BENCH_KEEP) ctx.rmTree(base)
  return {
    rows,
    notes,
    input: {
      release1: { files: rel1.files, symlinks: rel1.symlinks, directories: rel1.directories, bytes: rel1.bytes },
      release2: { files: rel2.files, symlinks: rel2.symlinks, directories: rel2.directories, bytes: rel2.bytes },
      edits,
      distinct: { smallContents: smallDigests.size, largeContents: largeDigests.size, directories: objs.dirs.size },
    },
    timing,
    seconds: (performance.now() - t0) / 1000,
  }
}
