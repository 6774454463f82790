import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { batchLines, writeAll } from '../cli/output.js'
import { StoreCommand } from '../cli/store-command.js'
import { UsageError } from '../errors.js'
import { listJson, listingToJson, listText } from '../ops/ls.js'

export default class Ls extends StoreCommand<typeof Ls> {
  static override summary = 'List a store path or a directory inside it, as `nix store ls` does.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> -lR /nix/store/…-hello',
    '<%= config.bin %> <%= command.id %> --json /nix/store/…-hello/bin',
  ]
  // Declared (with our own summary below) so that errors under --json are JSON too; the listing is printed here, not returned.
  static override enableJsonFlag = true
  static override args = { path: Args.string({ ignoreStdin: true, required: true, description: 'store path, optionally /sub/path inside it' }) }
  static override flags = {
    long: Flags.boolean({ char: 'l', summary: 'Show type, size and symlink targets.' }),
    recursive: Flags.boolean({ char: 'R', summary: 'List subdirectories recursively.' }),
    directory: Flags.boolean({ char: 'd', summary: 'Show directories rather than their contents.' }),
    json: Flags.boolean({ summary: "Print one line of JSON in Nix's listing format." }),
  }

  async run(): Promise<void> {
    const { long, recursive, directory } = this.flags
    const store = await this.store()
    if (this.jsonEnabled()) {
      if (directory) throw new UsageError("'--directory' is useless with '--json'")
      // Nix ends this line without a newline; so do we, byte for byte.
      process.stdout.write(listingToJson(await listJson(store, this.args.path, { recursive })))
      return
    }
    await writeAll(process.stdout, batchLines(listText(store, this.args.path, { long, recursive, directory })))
  }
}
