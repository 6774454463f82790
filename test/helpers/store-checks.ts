/**
 * Whether a store is intact and holds what it should, after a kill, a
 * storm or a gc. By default the checks run in-process (verify's report,
 * export-nar's bytes: what the commands print, without a process start-up
 * per check, which long tests pay hundreds of times); `cli: true` runs the
 * built commands themselves, for the final checks of a test.
 */
import assert from 'node:assert/strict'
import { runCli } from './cli.js'
import { exportNarOutput, verifyReport } from './ops.js'

export interface CheckOptions {
  /** Run `verify` / `export-nar` as processes of the built CLI. */
  cli?: boolean
}

/** `verify --store STORE` exits 0 and prints nothing (leftover temp files and stale lock tokens are not problems). */
export async function assertVerifies(store: string, what: string, { cli = false }: CheckOptions = {}): Promise<void> {
  if (!cli) {
    const report = await verifyReport(store)
    assert.deepEqual([...report.problems.map((p) => p.message), ...report.removed, ...report.added], [], `${what}: verify reported problems`)
    return
  }
  const r = await runCli(['verify', '--store', store])
  assert.equal(r.stdout.toString(), '', `${what}: verify reported problems:\n${r.stdout}${r.stderr}`)
  assert.equal(r.code, 0, `${what}: verify exited ${r.code}: ${r.stderr}`)
}

/** `export-nar --store STORE PATH` prints `nar`, the bytes `nix-store --dump` gives for the tree (`tree` names it in a failure). */
export async function assertExportsNar(store: string, storePath: string, nar: Buffer, what: string, tree: string, { cli = false }: CheckOptions = {}): Promise<void> {
  let out: Buffer
  if (cli) {
    const r = await runCli(['export-nar', '--store', store, storePath])
    assert.equal(r.code, 0, `${what}: export-nar ${storePath} exited ${r.code}: ${r.stderr}`)
    out = r.stdout
  } else out = await exportNarOutput(store, storePath)
  assert.ok(out.equals(nar), `${what}: export-nar ${storePath} differs from nix-store --dump of ${tree} (${out.length} vs ${nar.length} bytes)`)
}
