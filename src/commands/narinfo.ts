import * as Args from '@oclif/core/args'
import { StoreCommand } from '../cli/store-command.js'
import { narInfo } from '../ops/narinfo.js'
import { narInfoFields, renderNarInfo } from '../store/narinfo.js'
import { type NarInfoJson, narInfoJson } from '../store/path-info-json.js'

export default class NarInfo extends StoreCommand<typeof NarInfo> {
  static override summary = 'Print the .narinfo of a store path as Nix writes it.'
  static override description =
    'The NAR is described uncompressed (Compression: none), as `nix copy --to file://…?compression=none` writes it. ' +
    '--json prints what `nix path-info --json` prints for the path in such a binary cache.'
  static override examples = ['<%= config.bin %> <%= command.id %> /nix/store/…-hello', '<%= config.bin %> <%= command.id %> --json /nix/store/…-hello']
  static override enableJsonFlag = true
  static override args = { path: Args.string({ ignoreStdin: true, required: true, description: 'store path' }) }

  async run(): Promise<NarInfoJson> {
    const store = await this.store()
    const info = await narInfo(store, this.args.path)
    if (!this.jsonEnabled()) process.stdout.write(renderNarInfo(narInfoFields(info, store.storeDir)))
    return narInfoJson(info, store.storeDir)
  }
}
