import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { readKeyFile } from '../cli/key-file.js'
import { StoreCommand } from '../cli/store-command.js'
import { type SignReport, signPaths } from '../ops/sign.js'
import { parseSecretKey } from '../store/signing.js'

export default class Sign extends StoreCommand<typeof Sign> {
  static override summary = 'Add a signature to stored paths, as `nix store sign --key-file` does.'
  static override description =
    'The signature is the one Nix would make for the path and key (Ed25519 over the narinfo fingerprint), stored beside ' +
    'the path\'s other signatures; a path that has it already is left as it is. `narinfo` and `path-info --sigs` print them. ' +
    'Runs where the PathInfos live (local and memory stores; the tvix gRPC protocol cannot change a stored PathInfo).'
  static override examples = [
    '<%= config.bin %> <%= command.id %> --secret-key-file secret.key /nix/store/…-app',
    '<%= config.bin %> <%= command.id %> --secret-key-file secret.key --all',
  ]
  static override strict = false
  static override enableJsonFlag = true
  static override args = { path: Args.string({ ignoreStdin: true, description: 'the store paths to sign' }) }
  static override flags = {
    'secret-key-file': Flags.string({ required: true, summary: 'The secret key, NAME:BASE64 as `key generate` and `nix-store --generate-binary-cache-key` write it (`-`: stdin).' }),
    all: Flags.boolean({ summary: 'Sign every path in the store.' }),
    recursive: Flags.boolean({ char: 'r', summary: 'Sign the closures of the paths.' }),
  }

  async run(): Promise<{ added: number }> {
    const { argv } = await this.parse(Sign)
    const f = this.flags
    const key = parseSecretKey(readKeyFile(f['secret-key-file']))
    const report: SignReport = await signPaths(await this.store(), argv as string[], { key, all: f.all, recursive: f.recursive }, this.caller('sign'))
    if (!this.jsonEnabled()) process.stderr.write(`added ${report.added} signatures\n`) // as Nix 2.8 words it
    return { added: report.added }
  }
}
