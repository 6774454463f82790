import { type ChildProcessByStdio, spawn } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'

/*
 * syncfs(2) of a filesystem, which Node has no binding for: coreutils'
 * `sync --file-system PATH`. Starting that from Node forks the whole
 * process, and libuv's spawn() holds the event loop until the child has
 * exec'd: measured here 7-20 ms from a fresh CLI and 15-170 ms from a
 * daemon of ~200 MiB (page tables copied under the VM's shadow paging),
 * during which a daemon answers nothing. So one small shell is started
 * once and kept: each sync is a line to it, it forks `sync` (a fork of a
 * shell costs little) and answers a line. What is made durable, and when,
 * is unchanged: the same `sync --file-system` of the same path, asked for
 * after the writes it must cover, and only an exit code of 0 is a success.
 */

/** Reads paths, one a line; answers `0` for each synced, `1` for each that failed, in order. */
const LOOP = 'while IFS= read -r p; do if sync --file-system -- "$p"; then echo 0; else echo 1; fi; done'

type Helper = ChildProcessByStdio<Writable, Readable, null>

let helper: Helper | undefined
/** Answers awaited from `helper`, oldest first. */
let waiting: Array<(ok: boolean) => void> = []

/**
 * The shell, started now if it is not running. It keeps nothing alive:
 * its pipes are referenced only while an answer is awaited, and it exits
 * when this process goes (its stdin closes), however this process ends.
 */
function running(): Helper {
  if (helper) return helper
  const child = spawn('sh', ['-c', LOOP], { stdio: ['pipe', 'pipe', 'ignore'] })
  helper = child
  let line = ''
  child.stdout.setEncoding('latin1')
  child.stdout.on('data', (s: string) => {
    line += s
    for (let nl = line.indexOf('\n'); nl >= 0; nl = line.indexOf('\n')) {
      const answer = line.slice(0, nl)
      line = line.slice(nl + 1)
      waiting.shift()?.(answer === '0')
    }
    if (waiting.length === 0) idle(child)
  })
  // Gone (killed with its process group, or never started): what it owed fails, the next sync starts another.
  const gone = () => {
    if (helper !== child) return
    helper = undefined
    const owed = waiting
    waiting = []
    for (const resolve of owed) resolve(false)
  }
  child.once('error', gone)
  child.once('exit', gone)
  child.stdin.on('error', gone)
  idle(child)
  return child
}

/** A pipe's socket, which can stop keeping the process alive (net.Socket's ref/unref). */
type Pipe = { ref?(): void; unref?(): void }

function idle(child: Helper): void {
  child.unref()
  ;(child.stdout as Pipe).unref?.()
  ;(child.stdin as Pipe).unref?.()
}

function busy(child: Helper): void {
  child.ref()
  ;(child.stdout as Pipe).ref?.()
}

/** syncfs(2) of the filesystem holding `p` (async: a daemon keeps serving meanwhile); false if that failed. */
export function syncFilesystem(p: string): Promise<boolean> {
  // A line is a path: one with a line break goes to a `sync` of its own, as every path once did.
  if (p.includes('\n')) return syncAlone(p)
  return new Promise((resolve) => {
    const child = running()
    waiting.push(resolve)
    busy(child)
    child.stdin.write(`${p}\n`)
  })
}

/** Starts the shell ahead of the first sync (a daemon, at start-up, while it is small and serves nothing yet). */
export function startSyncHelper(): void {
  running()
}

function syncAlone(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn('sync', ['--file-system', p], { stdio: 'ignore' })
    child.once('error', () => resolve(false))
    child.once('exit', (code) => resolve(code === 0))
  })
}
