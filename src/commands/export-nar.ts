import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import { writeAll } from '../cli/output.js'
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
    output: Flags.string({ char: 'o', summary: 'Write to FILE (atomically) instead of stdout.', helpValue: 'FILE' }),
  }

  async run(): Promise<void> {
    const nar = await exportNar(await this.store(), this.args.path)
    const out = this.flags.output
    if (!out) return writeAll(process.stdout, nar)
    // Temp file next to the target, renamed on success: never a partial FILE.
    const tmp = `${out}.tmp-${randomBytes(6).toString('hex')}`
    const ws = fs.createWriteStream(tmp, { flags: 'wx' })
    try {
      await writeAll(ws, nar)
      await new Promise<void>((resolve, reject) => ws.end((e?: Error | null) => (e ? reject(e) : resolve())))
      fs.renameSync(tmp, out)
    } catch (e) {
      ws.destroy()
      fs.rmSync(tmp, { force: true })
      throw e
    }
  }
}
