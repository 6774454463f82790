/**
 * SIGHUP re-reads the daemon's secret files (a renewed certificate, rotated
 * tokens, passwords or signing keys) without a restart, as nginx or sshd do. All or
 * nothing: every file is read and checked first; if one is bad, the daemon
 * keeps what it had and says why in one log line.
 */
export interface Reloadable {
  /** What the log names: the flag and its file. */
  what: string
  /** Reads and checks the file (throwing its one-line error); returns what puts it in place. */
  load(): () => void
}

/** Re-reads `items` on every SIGHUP; returns what stops listening. */
export function reloadOnHangup(items: Reloadable[], log: (line: string) => void): () => void {
  const reload = () => {
    if (items.length === 0) return log('SIGHUP: nothing to reload (no --tls-cert, --auth-file, --http-auth-file or --secret-key-file)')
    let apply: Array<() => void>
    try {
      apply = items.map((i) => i.load())
    } catch (e) {
      return log(`SIGHUP: kept the previous files: ${(e as Error).message}`)
    }
    for (const a of apply) a()
    log(`SIGHUP: reloaded ${items.map((i) => i.what).join(', ')}`)
  }
  process.on('SIGHUP', reload)
  return () => process.off('SIGHUP', reload)
}
