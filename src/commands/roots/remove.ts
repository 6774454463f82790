import * as Args from '@oclif/core/args'
import { StoreCommand } from '../../cli/store-command.js'
import { UsageError } from '../../errors.js'
import { removeRoots, type RootEntry } from '../../ops/roots.js'

export default class RootsRemove extends StoreCommand<typeof RootsRemove> {
  static override summary = 'Remove GC roots; what they kept alive goes at the next `gc --prune`.'
  static override strict = false
  static override enableJsonFlag = true
  static override args = { name: Args.string({ ignoreStdin: true, description: 'root names' }) }

  async run(): Promise<RootEntry[]> {
    const { argv } = await this.parse(RootsRemove)
    if (argv.length === 0) throw new UsageError('give at least one root NAME')
    return removeRoots(await this.store(), argv as string[], this.caller('roots remove'))
  }
}
