import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import { writeAll } from '../cli/output.js'
import { StoreCommand } from '../cli/store-command.js'
import { exportNar } from '../ops/export-nar.js'
import { BackendError, NotFoundError } from '../errors.js'

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
    let fd: number
    try {
      // Opened here, synchronously: a bad folder is one clear error, and the file exists before anything can fail.
      fd = fs.openSync(tmp, 'wx', 0o644)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`cannot write ${out}: its folder does not exist`)
      throw new BackendError(`cannot write ${out}: ${(e as Error).message}`)
    }
    const ws = fs.createWriteStream(tmp, { fd })
    try {
      await writeAll(ws, nar)
      await new Promise<void>((resolve, reject) => ws.end((e?: Error | null) => (e ? reject(e) : resolve())))
      fs.renameSync(tmp, out)
    } catch (e) {
      await new Promise<void>((resolve) => ws.destroy().once('close', () => resolve()))
      fs.rmSync(tmp, { force: true })
      throw e
    }
  }
}
