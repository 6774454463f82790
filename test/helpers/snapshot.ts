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

/**
 * Temp files of writes into the store at `store`: in its tmp/, and, while
 * the store does not exist yet, in the staging folders beside it (one per
 * writing process, `.NAME.new-…`).
 */
export function tempFiles(store: string): string[] {
  const parent = path.dirname(store)
  const staging = fs.existsSync(parent) ? fs.readdirSync(parent).filter((n) => n.startsWith(`.${path.basename(store)}.new-`)) : []
  return [path.join(store, 'tmp'), ...staging.map((n) => path.join(parent, n))].flatMap((d) =>
    fs.existsSync(d) ? fs.readdirSync(d, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => path.join(e.parentPath, e.name)) : [],
  )
}
