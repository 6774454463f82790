import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { type NixPathInfoJson, pathInfoEntryJson, pathInfoLines } from '../cli/path-info-output.js'
import { StoreCommand } from '../cli/store-command.js'
import { queryPathInfos, referencesFirst } from '../ops/path-info.js'

export default class PathInfo extends StoreCommand<typeof PathInfo> {
  static override summary = 'Describe store paths as `nix path-info` does: sizes, closure sizes, signatures, JSON.'
  static override description =
    'A path inside a store path names that store path, as with Nix. Text lists the paths each after the paths it refers to, ' +
    'as Nix 2.8 does; --json is Nix 2.8\'s array, sorted by path, where a path that is not valid is {"path":…,"valid":false}.'
  static override examples = [
    '<%= config.bin %> <%= command.id %> -rsSh /nix/store/…-app',
    '<%= config.bin %> <%= command.id %> --json --recursive /nix/store/…-app',
    '<%= config.bin %> <%= command.id %> --all --sigs',
  ]
  static override strict = false
  static override enableJsonFlag = true
  static override args = { path: Args.string({ ignoreStdin: true, description: 'store paths (or paths inside them)' }) }
  static override flags = {
    all: Flags.boolean({ summary: 'Every valid path in the store.' }),
    recursive: Flags.boolean({ char: 'r', summary: 'The closures of the paths, by references.' }),
    size: Flags.boolean({ char: 's', summary: 'Print the NAR size of each path.' }),
    'closure-size': Flags.boolean({ char: 'S', summary: 'Print the total NAR size of each path\'s closure.' }),
    'human-readable': Flags.boolean({ char: 'h', summary: 'Sizes in K, M, G… (with -s or -S).' }),
    sigs: Flags.boolean({ summary: 'Print the content address and signatures of each path.' }),
  }

  async run(): Promise<NixPathInfoJson[]> {
    const { argv } = await this.parse(PathInfo)
    const f = this.flags
    const store = await this.store()
    const entries = await queryPathInfos(store, argv as string[], {
      all: f.all,
      recursive: f.recursive,
      closureSize: f['closure-size'],
      allowInvalid: this.jsonEnabled(),
    })
    if (!this.jsonEnabled()) {
      process.stdout.write(
        pathInfoLines(referencesFirst(entries), { size: f.size, closureSize: f['closure-size'], sigs: f.sigs, humanReadable: f['human-readable'] }),
      )
    }
    return entries.map((e) => pathInfoEntryJson(e, store.storeDir))
  }
}
