import { once } from 'node:events'
import type { Writable } from 'node:stream'
import { Chalk, type ChalkInstance } from 'chalk'

/** Colour only on a terminal, and never when NO_COLOR is set (chalk alone ignores it). */
export function colourFor(stream: { isTTY?: boolean }, env = process.env): ChalkInstance {
  const on = Boolean(stream.isTTY) && !env.NO_COLOR && env.TERM !== 'dumb'
  return new Chalk({ level: on ? 1 : 0 })
}

/**
 * Writes chunks with backpressure; leaves the stream open (it may be
 * stdout). Fails with the stream's error as soon as a write has failed.
 * `lent`: a chunk is valid only until the next is asked for (the source
 * reuses its buffer: RenderOptions.lend), so each write is waited for
 * first. Pieces of 256 KiB waited for drain anyway (past the 16 KiB
 * high-water mark), so this costs no overlap.
 */
export async function writeAll(out: Writable, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: { lent?: boolean } = {}): Promise<void> {
  for await (const c of chunks) {
    // A write that failed while the next chunk was being made (ENOSPC) was reported
    // then, once: a failed stream never drains, so waiting for it would hang.
    if (out.errored) throw out.errored
    if (opts.lent) await written(out, c)
    else if (!out.write(c)) await waitDrain(out)
  }
  if (out.errored) throw out.errored
}

/** Resolves once `out` is done with `c` (its write completed), rejects with the write's error. */
function written(out: Writable, c: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    // A failed write also emits 'error', after its callback: heard here, not left unhandled (the listener stays for it).
    out.once('error', reject)
    out.write(c, (e) => {
      if (e) return reject(e)
      out.off('error', reject)
      resolve()
    })
  })
}

async function waitDrain(out: Writable): Promise<void> {
  if (out.errored) throw out.errored
  const ac = new AbortController()
  try {
    await Promise.race([once(out, 'drain', { signal: ac.signal }), once(out, 'error', { signal: ac.signal }).then(([e]) => Promise.reject(e))])
  } finally {
    ac.abort()
  }
}

/** Lines joined into few large writes (listings can be long). */
export async function* batchLines(lines: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const NL = Buffer.from('\n')
  let batch: Uint8Array[] = []
  let size = 0
  for await (const l of lines) {
    batch.push(l, NL)
    size += l.length + 1
    if (size >= 64 * 1024) {
      yield Buffer.concat(batch)
      batch = []
      size = 0
    }
  }
  if (batch.length > 0) yield Buffer.concat(batch)
}

/** `1 path`, `2 paths`: a count with its noun. */
export function plural(k: number, noun: string): string {
  return `${k} ${noun}${k === 1 ? '' : 's'}`
}
