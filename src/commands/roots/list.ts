import { StoreCommand } from '../../cli/store-command.js'
import { colourFor } from '../../cli/output.js'
import { listRoots, type RootEntry } from '../../ops/roots.js'

export default class RootsList extends StoreCommand<typeof RootsList> {
  static override summary = 'List the GC roots: NAME -> STORE_PATH.'
  static override enableJsonFlag = true

  async run(): Promise<RootEntry[]> {
    const roots = await listRoots(await this.store(), this.caller('roots list'))
    if (!this.jsonEnabled()) {
      const c = colourFor(process.stdout)
      for (const r of roots) process.stdout.write(`${r.name} -> ${r.path ?? '(unreadable)'}${r.valid ? '' : c.yellow(' (not in the store)')}\n`)
    }
    return roots
  }
}
