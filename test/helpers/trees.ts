import fs from 'node:fs'
import path from 'node:path'

/** Deterministic PRNG (mulberry32): test inputs are the same on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `n` seeded pseudo-random bytes. */
export function randomBytes(n: number, seed: number): Buffer {
  const r = rng(seed)
  const out = Buffer.allocUnsafe(n)
  let i = 0
  for (; i + 4 <= n; i += 4) out.writeUInt32LE((r() * 0x1_0000_0000) >>> 0, i)
  for (; i < n; i++) out[i] = Math.floor(r() * 256)
  return out
}

function write(p: string, data: string | Uint8Array, mode = 0o644): void {
  fs.mkdirSync(path.dirname(p), { recursive: true })
  fs.writeFileSync(p, data)
  fs.chmodSync(p, mode)
}

/**
 * The trees every interop test runs on. Each builder creates its input at
 * `dest` (which must not exist) and returns nothing; `dest`'s basename is
 * the store path name.
 */
export const TREES: Record<string, (dest: string) => void> = {
  'empty-dir': (d) => fs.mkdirSync(d, { recursive: true }),
  'single-file': (d) => write(d, 'Hello World!'),
  executable: (d) => write(d, '#!/bin/sh\necho hi\n', 0o755),
  'empty-file': (d) => write(d, ''),
  'top-symlink': (d) => {
    fs.mkdirSync(path.dirname(d), { recursive: true })
    fs.symlinkSync('/nix/store/somewhereelse', d)
  },
  'mixed': (d) => {
    write(path.join(d, 'run.sh'), '#!/bin/sh\necho hi\n', 0o755)
    write(path.join(d, 'sub/a.txt'), 'abc')
    write(path.join(d, 'sub/empty'), '')
    fs.mkdirSync(path.join(d, 'emptydir'))
    fs.symlinkSync('run.sh', path.join(d, 'link'))
    fs.symlinkSync('../../../etc/passwd', path.join(d, 'sub/outside'))
    fs.symlinkSync('/absolute/target/that/does/not/exist', path.join(d, 'dangling'))
  },
  'odd-names': (d) => {
    // Unicode, spaces, leading dots, and names whose byte order differs from
    // locale order ("B" < "Z" < "_" < "a" < "é" bytewise).
    for (const n of ['é', 'a', '_', 'Z', 'B', '-x', '.hidden', 'with space', 'ünïcödé ✓', '10', '2', 'a.b', 'a-b', 'A']) {
      write(path.join(d, n), `content of ${n}\n`)
    }
    fs.mkdirSync(path.join(d, '.dotdir'))
    write(path.join(d, '.dotdir/.inner'), '')
  },
  'big-file': (d) => {
    fs.mkdirSync(d, { recursive: true })
    write(path.join(d, 'big.bin'), randomBytes(20 * 1024 * 1024, 20))
    write(path.join(d, 'small.txt'), 'small\n')
  },
  'deep': (d) => {
    let p = d
    for (let i = 0; i < 50; i++) p = path.join(p, `d${i}`)
    write(path.join(p, 'bottom.txt'), 'the bottom\n')
  },
  'wide': (d) => {
    fs.mkdirSync(d, { recursive: true })
    const r = rng(2000)
    for (let i = 0; i < 2000; i++) {
      const len = Math.floor(r() * 300)
      write(path.join(d, `f${String(i).padStart(4, '0')}`), randomBytes(len, i), r() < 0.1 ? 0o755 : 0o644)
    }
  },
}

/** Builds tree `kind` at `<root>/<name>` and returns that path. */
export function makeTree(root: string, kind: keyof typeof TREES, name: string = kind): string {
  const dest = path.join(root, name)
  TREES[kind]!(dest)
  return dest
}

/** The entries of a tree on disk by kind, relative to it ('' = the root itself), in byte order. */
export interface Walked {
  files: string[]
  dirs: string[]
  symlinks: string[]
}

export function walk(p: string): Walked {
  const out: Walked = { files: [], dirs: [], symlinks: [] }
  const visit = (rel: string) => {
    const st = fs.lstatSync(path.join(p, rel))
    if (st.isSymbolicLink()) out.symlinks.push(rel)
    else if (st.isFile()) out.files.push(rel)
    else if (st.isDirectory()) {
      out.dirs.push(rel)
      const names = fs.readdirSync(path.join(p, rel)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
      for (const n of names) visit(rel ? `${rel}/${n}` : n)
    } else throw new Error(`unexpected file type at ${rel}`)
  }
  visit('')
  return out
}

/** A small tree for sub-path spellings at `dest`: file `a`, directory `d` holding file `b`, symlink `l` -> `a`. */
export function makeSubpathTree(dest: string): string {
  write(path.join(dest, 'a'), 'hi\n')
  write(path.join(dest, 'd', 'b'), 'bee\n')
  fs.symlinkSync('a', path.join(dest, 'l'))
  return dest
}

/**
 * Inputs for `path-info -h` in `dest`, each entry one path to add (returned
 * sorted): NarSize is 112 + the file size padded to 8, so 1024 bytes
 * exactly, just over it, ties that printf rounds to even (1.25K, 1.75K,
 * 2.25K), a few MiB, and a directory.
 */
export function makeSizeSamples(dest: string): string[] {
  for (const [name, size] of [['k1024', 912], ['k1032', 920], ['k1280', 1168], ['k1792', 1680], ['k2304', 2192], ['m3', 3 << 20]] as const) {
    write(path.join(dest, name), Buffer.alloc(size, name))
  }
  write(path.join(dest, 'dir/sub/x'), 'x')
  fs.symlinkSync('sub/x', path.join(dest, 'dir/link'))
  return fs.readdirSync(dest).sort().map((name) => path.join(dest, name))
}
