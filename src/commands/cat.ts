import * as Args from '@oclif/core/args'
import { writeAll } from '../cli/output.js'
import { StoreCommand } from '../cli/store-command.js'
import { catFile } from '../ops/cat.js'

export default class Cat extends StoreCommand<typeof Cat> {
  static override summary = 'Print the contents of a file in the store, as `nix store cat` does.'
  static override examples = ['<%= config.bin %> <%= command.id %> /nix/store/…-hello/share/doc/README']
  static override args = { path: Args.string({ ignoreStdin: true, required: true, description: 'store path of a regular file, or /sub/path inside one' }) }

  async run(): Promise<void> {
    // Each write is waited for before the next piece is read: the reader may reuse its buffers.
    await writeAll(process.stdout, await catFile(await this.store(), this.args.path, { lend: true }), { lent: true })
  }
}
