import * as Args from '@oclif/core/args'
import { readKeyFile } from '../../cli/key-file.js'
import { StoreCommand } from '../../cli/store-command.js'
import { parseSecretKey, publicKeyOf, renderPublicKey } from '../../store/signing.js'

export default class KeyPublic extends StoreCommand<typeof KeyPublic> {
  static override summary = 'Print the public key of a secret key (from FILE or stdin), as `nix key convert-secret-to-public`.'
  static override examples = ['<%= config.bin %> <%= command.id %> secret.key', '<%= config.bin %> key generate cache-1 | <%= config.bin %> <%= command.id %>']
  static override args = { file: Args.string({ ignoreStdin: true, default: '-', description: 'the secret key file (`-`: stdin)' }) }

  async run(): Promise<void> {
    process.stdout.write(renderPublicKey(publicKeyOf(parseSecretKey(readKeyFile(this.args.file)))) + '\n')
  }
}
