import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { writeAll } from '../cli/output.js'
import { writeOutputFile } from '../cli/output-file.js'
import { StoreCommand } from '../cli/store-command.js'
import { exportNar } from '../ops/export-nar.js'

export default class ExportNar extends StoreCommand<typeof ExportNar> {
  static override summary = 'Write the NAR of a store path, byte for byte as `nix-store --dump` does.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> /nix/store/…-hello > hello.nar',
    '<%= config.bin %> <%= command.id %> /nix/store/…-hello -o hello.nar',
  ]
  static override args = { path: Args.string({ ignoreStdin: true, required: true, description: 'store path (optionally /sub/path inside it)' }) }
  static override flags = {
    output: Flags.string({
      char: 'o',
      summary: 'Write to FILE instead of stdout: a regular file is replaced atomically, a device or FIFO written through.',
      helpValue: 'FILE',
    }),
  }

  async run(): Promise<void> {
    // Each write is waited for before the next piece is made: the reader may reuse its buffers.
    const nar = await exportNar(await this.store(), this.args.path, { lend: true })
    const out = this.flags.output
    if (!out) return writeAll(process.stdout, nar, { lent: true })
    return writeOutputFile(out, nar, { lent: true })
  }
}
