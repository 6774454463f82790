import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import { countProgress } from '../cli/progress.js'
import { plural } from '../cli/output.js'
import { StoreCommand } from '../cli/store-command.js'
import { parseTrustedKeysFlag } from '../cli/trusted-keys.js'
import { type TrustOptions, verifyStore, type VerifyReport } from '../ops/verify.js'
import { UsageError } from '../errors.js'
import { parseStorePathArg } from '../store/store-path.js'
import { parseSize } from '../util/size.js'

export default class Verify extends StoreCommand<typeof Verify> {
  static override summary = 'Check that the store is intact: every object re-hashed, every path complete.'
  static override description =
    'Without arguments the whole store is checked; with store paths, those paths and every object their trees use. ' +
    'Each problem is printed on its own line and the exit code is 1 if there is any. --repair removes corrupt objects, ' +
    'what can no longer be read because of them, and the paths that can no longer be served; importing them again restores them.'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --nar-hash /nix/store/…-hello', '<%= config.bin %> <%= command.id %> --repair']
  static override strict = false
  static override enableJsonFlag = true
  static override args = { path: Args.string({ ignoreStdin: true, description: 'store paths to check (default: everything)' }) }
  static override flags = {
    'nar-hash': Flags.boolean({ summary: 'Also re-render each NAR and compare it with the recorded NarHash and NarSize.' }),
    'max-nar-size': Flags.string({
      summary: 'With --nar-hash: skip (and list) paths whose NAR is larger than SIZE, e.g. 64G, instead of rendering it.',
      helpValue: 'SIZE',
      default: '64G',
    }),
    repair: Flags.boolean({ summary: 'Remove corrupt objects and the paths that can no longer be served.' }),
    'trusted-public-keys': Flags.string({
      summary: 'Also check signatures: each path not content-addressed needs --sigs-needed valid signatures by these keys (NAME:BASE64, space-separated).',
      helpValue: 'KEYS',
      env: 'TVIX_TRUSTED_PUBLIC_KEYS',
    }),
    'sigs-needed': Flags.integer({ summary: 'With --trusted-public-keys: how many valid signatures each path needs.', min: 1, helpValue: 'N' }),
  }

  async run(): Promise<VerifyReport> {
    const { argv } = await this.parse(Verify)
    const paths = (argv as string[]).map((p) => parseStorePathArg(p, this.flags['store-dir']).path)
    const maxNarSize = parseSize(this.flags['max-nar-size'], 'max-nar-size')
    const trust = trustOptions(this.flags['trusted-public-keys'], this.flags['sigs-needed'])
    const store = await this.store()
    const progress = countProgress('verifying')
    let report: VerifyReport
    try {
      report = await verifyStore(
        store,
        { paths: paths.length > 0 ? paths : undefined, narHash: this.flags['nar-hash'], maxNarSize, repair: this.flags.repair, onProgress: progress.update },
        this.caller('verify'),
        trust,
      )
    } finally {
      progress.stop()
    }
    const c = report.checked
    if (!this.jsonEnabled()) {
      for (const p of report.problems) process.stdout.write(`${p.message}\n`)
      for (const r of report.removed) process.stdout.write(`${r}\n`)
      for (const a of report.added) process.stdout.write(`${a}\n`)
      for (const s of report.skipped) process.stderr.write(`skipped ${s}\n`)
      process.stderr.write(
        `checked ${plural(c.paths, 'path')}, ${c.directories} director${c.directories === 1 ? 'y' : 'ies'} and ${plural(c.blobs + c.packs, 'blob')} (${c.packs} packed) in ${report.seconds.toFixed(2)} s: ` +
          `${report.problems.length === 0 ? 'no problems' : plural(report.problems.length, 'problem')}` +
          (this.flags.repair ? `, ${report.removed.length} removed` : '') +
          (report.added.length > 0 ? `, ${report.added.length} added` : '') +
          (report.skipped.length > 0 ? `, ${report.skipped.length} skipped` : '') +
          '\n',
      )
    }
    // The problems are on stdout (or in the JSON); the exit code says the store was not clean.
    if (report.problems.length > 0) process.exitCode = 1
    return report
  }
}

/** The signature check verify runs, if keys are given: a bad key is a usage error, as a bad flag. */
function trustOptions(keys: string | undefined, sigsNeeded: number | undefined): TrustOptions | undefined {
  if (keys === undefined) {
    if (sigsNeeded !== undefined) throw new UsageError('--sigs-needed needs --trusted-public-keys: the keys whose signatures count')
    return undefined
  }
  return { trustedKeys: parseTrustedKeysFlag(keys), sigsNeeded: sigsNeeded ?? 1 }
}
