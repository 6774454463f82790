import fs from 'node:fs'
import path from 'node:path'
import { plural } from './output.js'

/** Only imports at least this big get a progress bar. */
const BAR_THRESHOLD = 32 * 1024 * 1024
const SLASH = Buffer.from('/')

/** Total bytes of regular files below `p` (symlinks not followed). */
function treeBytes(p: Buffer): number {
  const st = fs.lstatSync(p, { throwIfNoEntry: false })
  if (!st) return 0
  if (st.isFile()) return st.size
  if (!st.isDirectory()) return 0
  let total = 0
  // Buffer names: file names need not be UTF-8. Errors are the import's to report.
  try {
    for (const name of fs.readdirSync(p, { encoding: 'buffer' })) total += treeBytes(Buffer.concat([p, SLASH, name]))
  } catch {}
  return total
}

export interface Progress {
  update(bytes: number, files: number): void
  stop(): void
}

const NONE: Progress = { update() {}, stop() {} }

/**
 * A cli-progress bar on stderr for large imports, only on a terminal;
 * piped or small runs print nothing extra. Sizing the tree costs one extra
 * metadata walk, which is why it only happens on a terminal.
 */
export async function importProgress(paths: string[]): Promise<Progress> {
  if (!process.stderr.isTTY || process.env.CI) return NONE
  const total = paths.reduce((n, p) => n + treeBytes(Buffer.from(path.resolve(p))), 0)
  if (total < BAR_THRESHOLD) return NONE
  const { default: cliProgress } = await import('cli-progress')
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'importing [{bar}] {percentage}% | {done}/{size} MiB | {files}',
      hideCursor: true,
      clearOnComplete: true,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  )
  let done = 0
  let files = 0
  const mib = (n: number) => (n / 1048576).toFixed(0)
  bar.start(total, 0, { done: '0', size: mib(total), files: plural(0, 'file') })
  return {
    update(bytes, nfiles) {
      done += bytes
      files += nfiles
      bar.update(Math.min(done, total), { done: mib(done), files: plural(files, 'file') })
    },
    stop: () => bar.stop(),
  }
}

/**
 * A bar over a count, on a terminal only; cli-progress is loaded on the
 * first update, so commands that never show one do not pay for it.
 */
function lazyBar(format: string): { update(done: number, total: number, payload?: Record<string, string>): void; stop(): void } {
  if (!process.stderr.isTTY || process.env.CI) return { update() {}, stop() {} }
  let bar: import('cli-progress').SingleBar | undefined
  let loading: Promise<void> | undefined
  let stopped = false
  return {
    update(done, total, payload) {
      loading ??= import('cli-progress').then(({ default: cliProgress }) => {
        // Work that ended before the module loaded gets no bar: one started now would never be stopped, and its timer would keep the process alive.
        if (stopped) return
        bar = new cliProgress.SingleBar({ stream: process.stderr, format, hideCursor: true, clearOnComplete: true, fps: 10 }, cliProgress.Presets.shades_classic)
        bar.start(total, done, payload)
      })
      bar?.setTotal(total)
      bar?.update(done, payload)
    },
    stop: () => {
      stopped = true
      bar?.stop()
    },
  }
}

/** Paths done / total and bytes moved, for `copy` on a terminal. */
export function copyProgress(): { update(p: { pathsDone: number; pathsTotal: number; bytes: number }): void; stop(): void } {
  const bar = lazyBar('copying [{bar}] {value}/{total} paths | {mib} MiB')
  return { update: (p) => bar.update(p.pathsDone, p.pathsTotal, { mib: (p.bytes / 1048576).toFixed(0) }), stop: bar.stop }
}

/** A bar over a count of items (gc's deletions, verify's objects), on a terminal only. */
export function countProgress(label: string): { update(done: number, total: number): void; stop(): void } {
  return lazyBar(`${label} [{bar}] {value}/{total}`)
}
