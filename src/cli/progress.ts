import fs from 'node:fs'
import path from 'node:path'
import { onInterrupt } from '../util/interrupt.js'
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

/** A progress bar, and the way to write lines while it may be drawn. */
export interface Progress {
  update(bytes: number, files: number): void
  /** Clears the bar for good (idempotent). */
  stop(): void
  /** Writes `text` (default: to stdout) on a line of its own, never on the bar's. */
  print(text: string, stream?: NodeJS.WriteStream): void
}

interface Bar {
  update(done: number, total: number, payload?: Record<string, string | number>): void
  stop(): void
  print(text: string, stream?: NodeJS.WriteStream): void
}

const plainPrint = (text: string, stream: NodeJS.WriteStream = process.stdout) => void stream.write(text)
const NO_BAR: Bar = { update() {}, stop() {}, print: plainPrint }
const NO_PROGRESS: Progress = NO_BAR

/** Bars only on a terminal, and never under CI (logs of CI runs are not terminals even when they claim to be). */
function barWanted(): boolean {
  return Boolean(process.stderr.isTTY) && !process.env.CI
}

/** Whether text written to `stream` lands on the terminal the bar is drawn on (stderr's). */
function sharesBarTerminal(stream: NodeJS.WriteStream): boolean {
  if (stream === process.stderr) return true
  if (!stream.isTTY) return false
  try {
    return fs.fstatSync((stream as { fd?: number }).fd ?? 1).rdev === fs.fstatSync(2).rdev
  } catch {
    return true
  }
}

/**
 * A cli-progress bar on stderr, on a terminal only; the module is loaded
 * on the first update, so commands that never show one do not pay for it.
 *
 * cli-progress draws the bar on the cursor's line and, when it stops,
 * restores the cursor it saved at start and clears that line. So nothing
 * may be written to that terminal while the bar is drawn: a line written
 * then (an imported store path) moves the cursor, and the clean-up erases
 * it and leaves the bar on the line below. print() therefore clears the
 * bar first; the next update draws it again, on the line after the text.
 */
function lazyBar(format: string): Bar {
  if (!barWanted()) return NO_BAR
  let bar: import('cli-progress').SingleBar | undefined
  let loading: Promise<void> | undefined
  let stopped = false
  let drawn = false
  let last: [number, number, Record<string, string | number> | undefined] = [0, 0, undefined]
  const draw = () => {
    if (!bar || stopped) return
    const [done, total, payload] = last
    if (drawn) {
      bar.setTotal(total)
      bar.update(done, payload)
    } else {
      bar.start(total, done, payload)
      drawn = true
    }
  }
  const erase = () => {
    if (drawn) bar!.stop()
    drawn = false
  }
  // Ctrl-C: the cursor shown again, line wrap back on, and the error line on a line of its own.
  onInterrupt(erase)
  return {
    update(done, total, payload) {
      last = [done, total, payload]
      loading ??= import('cli-progress').then(({ default: cliProgress }) => {
        // Work that ended before the module loaded gets no bar: one started now would never be stopped, and its timer would keep the process alive.
        if (stopped) return
        bar = new cliProgress.SingleBar({ stream: process.stderr, format, hideCursor: true, clearOnComplete: true, fps: 10 }, cliProgress.Presets.shades_classic)
        draw()
      })
      draw()
    },
    stop() {
      stopped = true
      erase()
    },
    print(text, stream = process.stdout) {
      if (sharesBarTerminal(stream)) erase()
      stream.write(text)
    },
  }
}

/**
 * A bar on stderr for large imports, only on a terminal; piped or small
 * runs print nothing extra. Sizing the tree costs one extra metadata walk,
 * which is why it only happens on a terminal.
 */
export function importProgress(paths: string[]): Progress {
  if (!barWanted()) return NO_PROGRESS
  const total = paths.reduce((n, p) => n + treeBytes(Buffer.from(path.resolve(p))), 0)
  if (total < BAR_THRESHOLD) return NO_PROGRESS
  const bar = lazyBar('importing [{bar}] {percentage}% | {done}/{size} MiB | {files}')
  let done = 0
  let files = 0
  const mib = (n: number) => (n / 1048576).toFixed(0)
  const show = () => bar.update(Math.min(done, total), total, { done: mib(done), size: mib(total), files: plural(files, 'file') })
  show()
  return {
    update(bytes, nfiles) {
      done += bytes
      files += nfiles
      show()
    },
    stop: bar.stop,
    print: bar.print,
  }
}

/** Paths done / total and bytes moved, for `copy` on a terminal. */
export function copyProgress(): { update(p: { pathsDone: number; pathsTotal: number; bytes: number }): void; stop(): void } {
  const bar = lazyBar('copying [{bar}] {value}/{total} paths | {mib} MiB | {rate} MiB/s')
  const started = performance.now()
  const rate = (bytes: number) => (bytes / 1048576 / Math.max(0.001, (performance.now() - started) / 1000)).toFixed(1)
  return { update: (p) => bar.update(p.pathsDone, p.pathsTotal, { mib: (p.bytes / 1048576).toFixed(0), rate: rate(p.bytes) }), stop: bar.stop }
}

/** A bar over a count of items (gc's deletions, verify's objects), on a terminal only. */
export function countProgress(label: string): Bar {
  return lazyBar(`${label} [{bar}] {value}/{total}`)
}
