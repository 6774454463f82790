import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export interface Tmpfs {
  dir: string
  /** Unmounts and removes the mount point; safe to call twice. */
  remove(): void
}

/**
 * A small, really full-able filesystem: a tmpfs of `sizeMiB` MiB. Needs root;
 * returns the reason instead when it cannot be had (the caller skips).
 */
export function mountTmpfs(sizeMiB: number): Tmpfs | string {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root'
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tvix-tmpfs-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', dir], { stdio: 'pipe' })
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true })
    return `cannot mount a tmpfs: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`
  }
  let mounted = true
  return {
    dir,
    remove() {
      if (mounted) {
        // Lazily if a file is still open (a killed child's): it goes when the last one closes.
        try {
          execFileSync('umount', [dir], { stdio: 'pipe' })
        } catch {
          execFileSync('umount', ['-l', dir], { stdio: 'pipe' })
        }
        mounted = false
      }
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}
