import { spawn } from 'node:child_process'
import { Duplex } from 'node:stream'
import { BackendError, InvalidInputError } from '../errors.js'

/**
 * A compression program (`xz -dc`, `zstd -c`, …) as a Duplex stream: what is
 * written goes to its stdin, its stdout is what is read. Backpressure holds
 * both pipes, so memory stays at the pipe buffers; destroying the stream
 * kills the process, and a process that fails destroys the stream with its
 * own message (`what` names the step: "xz decompression"), or with what
 * `explain` makes of the program's stderr.
 */
export function childCodec(command: string, args: string[], what: string, explain?: (stderr: string) => string | undefined): Duplex {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 2048) stderr += d
  })
  // The program's exit status tells what went wrong; a write into its closed stdin only repeats it.
  child.stdin.on('error', () => {})
  let exited = false
  const duplex = new Duplex({
    write(chunk: Buffer, _enc, done) {
      if (child.stdin.write(chunk)) done()
      else child.stdin.once('drain', () => done())
    },
    final(done) {
      child.stdin.end(done)
    },
    read() {
      child.stdout.resume()
    },
    destroy(err, done) {
      if (!exited) child.kill('SIGKILL')
      done(err)
    },
  })
  child.stdout.on('data', (c: Buffer) => {
    if (!duplex.push(c)) child.stdout.pause()
  })
  child.once('error', (e: NodeJS.ErrnoException) => {
    exited = true
    const why = e.code === 'ENOENT' ? `the \`${command}\` program is not installed` : e.message
    duplex.destroy(new BackendError(`${what} failed: ${why}`, { cause: e }))
  })
  // 'close' comes after stdout ended: every byte was pushed before the verdict.
  child.once('close', (code, signal) => {
    exited = true
    if (code === 0) duplex.push(null)
    else if (!duplex.destroyed) duplex.destroy(new InvalidInputError(`${what} failed: ${explain?.(stderr) ?? (firstLine(stderr) || `exit ${code ?? signal}`)}`))
  })
  return duplex
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0]!.replace(/^\S+: \(stdin\): /, '')
}
