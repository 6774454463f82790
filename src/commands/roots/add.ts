import * as Args from '@oclif/core/args'
import { StoreCommand } from '../../cli/store-command.js'
import { addRoot, type RootEntry } from '../../ops/roots.js'

export default class RootsAdd extends StoreCommand<typeof RootsAdd> {
  static override summary = 'Keep a store path and its closure alive across `gc --prune`.'
  static override description = 'Adding a root under an existing name points it at the new path.'
  static override examples = ['<%= config.bin %> <%= command.id %> my-app /nix/store/…-my-app']
  static override enableJsonFlag = true
  static override args = {
    name: Args.string({ required: true, ignoreStdin: true, description: 'root name' }),
    path: Args.string({ required: true, ignoreStdin: true, description: 'store path to keep alive' }),
  }

  async run(): Promise<RootEntry> {
    const { name, path } = this.args
    const root = await addRoot(await this.store(), name, path, this.caller('roots add'))
    if (!this.jsonEnabled()) process.stdout.write(`${root.name} -> ${root.path}\n`)
    return root
  }
}
