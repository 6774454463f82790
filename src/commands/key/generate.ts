import * as Args from '@oclif/core/args'
import { StoreCommand } from '../../cli/store-command.js'
import { generateSecretKey, renderSecretKey } from '../../store/signing.js'

export default class KeyGenerate extends StoreCommand<typeof KeyGenerate> {
  static override summary = 'Print a new secret signing key NAME:BASE64, as `nix key generate-secret --key-name NAME`.'
  static override description =
    'An Ed25519 key in Nix\'s format, for `sign`, `nix store sign --key-file` and a binary cache\'s secret-key. ' +
    '`key public` prints its public key (for trusted-public-keys). Keep the secret key file readable only by you.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> cache.example.org-1 > secret.key && chmod 600 secret.key',
    '<%= config.bin %> key public secret.key > public.key',
  ]
  static override args = { name: Args.string({ required: true, description: 'the key name (a cache\'s host name and a number, by convention)' }) }

  async run(): Promise<void> {
    process.stdout.write(renderSecretKey(generateSecretKey(this.args.name)) + '\n')
  }
}
