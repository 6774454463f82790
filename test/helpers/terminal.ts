import { spawnSync } from 'node:child_process'
import { BIN, REPO } from './cli.js'
import { runProcess } from './spawn.js'

/**
 * Runs the built CLI with stdin, stdout and stderr on one pseudo-terminal
 * (`rows` x `cols`), as in an interactive shell, and returns everything
 * written to it, raw (the tty turns "\n" into "\r\n"). With `sigintAfter`,
 * the command gets SIGINT (as from Ctrl-C) once it has written that text.
 */
const PTY_RUNNER = `
import fcntl, os, pty, signal, struct, sys, termios
rows, cols, sigint_after = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
    os.execvp(sys.argv[4], sys.argv[4:])
out = bytearray()
while True:
    try:
        b = os.read(fd, 65536)
    except OSError:
        break
    if not b:
        break
    out += b
    if sigint_after and sigint_after in out:
        os.kill(pid, signal.SIGINT)
        sigint_after = b''
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
`

/** Why a pseudo-terminal cannot be had here, or undefined when it can. */
export function ptyMissing(): string | undefined {
  const r = spawnSync('python3', ['-c', 'import pty'], { encoding: 'utf8' })
  return r.error || r.status !== 0 ? "python3 with its pty module is needed to run the CLI on a pseudo-terminal" : undefined
}

export async function runCliOnPty(
  args: string[],
  opts: { env: NodeJS.ProcessEnv; rows: number; cols: number; sigintAfter?: string },
): Promise<{ code: number; output: Buffer }> {
  const r = await runProcess('python3', ['-c', PTY_RUNNER, String(opts.rows), String(opts.cols), opts.sigintAfter ?? '', process.execPath, BIN, ...args], {
    env: opts.env,
    cwd: REPO,
  })
  return { code: r.code, output: r.stdout }
}

/**
 * What a terminal of `rows` lines shows after `bytes`, scrolled-off lines
 * first: a minimal VT100 model of what cli-progress and Node's readline
 * emit (CR, LF, save/restore cursor, CHA, cursor moves, erase in line;
 * cursor visibility, autowrap and colours change nothing here). Any other
 * control sequence throws, so the model never silently mis-renders. Lines
 * are unbounded (no wrap); the cursor starts at `startRow`, column 0.
 */
export function replayTerminal(bytes: Uint8Array, rows: number, startRow = 0): string[] {
  const cps = Array.from(Buffer.from(bytes).toString('utf8'))
  const scrolled: string[][] = []
  const screen: string[][] = Array.from({ length: rows }, () => [])
  let row = startRow
  let col = 0
  let saved = { row, col }
  const line = () => screen[row]!
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i]!
    if (c === '\x1b') {
      const next = cps[++i]
      if (next === '7') saved = { row, col }
      else if (next === '8') ({ row, col } = saved)
      else if (next === '[') {
        let params = ''
        while (i + 1 < cps.length && !/[@-~]/.test(cps[i + 1]!)) params += cps[++i]
        const final = cps[++i]
        const n = params === '' || params.startsWith('?') ? undefined : Number(params)
        switch (final) {
          case 'G':
            col = (n ?? 1) - 1
            break
          case 'K': {
            const l = line()
            if ((n ?? 0) === 0) l.length = Math.min(l.length, col)
            else if (n === 1) for (let k = 0; k <= col && k < l.length; k++) l[k] = ' '
            else l.length = 0
            break
          }
          case 'A':
            row = Math.max(0, row - (n ?? 1))
            break
          case 'B':
            row = Math.min(rows - 1, row + (n ?? 1))
            break
          case 'C':
            col += n ?? 1
            break
          case 'D':
            col = Math.max(0, col - (n ?? 1))
            break
          case 'h':
          case 'l':
            if (params !== '?25' && params !== '?7') throw new Error(`unmodelled mode ${JSON.stringify(params + final)}`)
            break
          case 'm':
            break
          default:
            throw new Error(`unmodelled escape sequence ${JSON.stringify('\x1b[' + params + final)}`)
        }
      } else throw new Error(`unmodelled escape ${JSON.stringify('\x1b' + next)}`)
    } else if (c === '\r') col = 0
    else if (c === '\n') {
      if (row === rows - 1) {
        scrolled.push(screen.shift()!)
        screen.push([])
      } else row++
    } else if (c < ' ') throw new Error(`unmodelled control character ${JSON.stringify(c)}`)
    else {
      const l = line()
      while (l.length < col) l.push(' ')
      l[col++] = c
    }
  }
  return [...scrolled, ...screen].map((l) => l.join('').trimEnd())
}
