import fs from 'node:fs'
import path from 'node:path'

/** Every file under `root` with its size, to prove a failed command changed nothing. */
export function snapshot(root: string): string[] {
  if (!fs.existsSync(root)) return []
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else out.push(`${path.relative(root, p)} ${fs.lstatSync(p).size}`)
    }
  }
  walk(root)
  return out.sort()
}
