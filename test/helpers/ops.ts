/**
 * In-process counterparts of the commands, for test/ops/: the op a command
 * runs and the rendering it prints, without a process. What only a process
 * shows (flag parsing, exit codes, the `error:` line, --json on stdout)
 * stays in the command and e2e tests.
 */
import { readAll } from '../../src/castore/blob-service.js'
import { type OpenStoreOptions, openStore } from '../../src/backends/open-store.js'
import { batchLines } from '../../src/cli/output.js'
import { exportNar } from '../../src/ops/export-nar.js'
import { importNar } from '../../src/ops/import-nar.js'
import { importPath } from '../../src/ops/import-paths.js'
import { inWriteSession } from '../../src/store/capabilities.js'
import { type VerifyReport, verifyStore } from '../../src/ops/verify.js'
import { pathInfoLines } from '../../src/cli/path-info-output.js'
import { listJson, listingToJson, listText } from '../../src/ops/ls.js'
import { queryPathInfos, referencesFirst } from '../../src/ops/path-info.js'
import type { Store } from '../../src/store/store.js'

/** A fresh `memory://` store. */
export function memoryStore(): Promise<Store> {
  return openStore({ url: 'memory://' })
}

/**
 * Stdout of `export-nar --store URL TARGET`, in-process: the store opened
 * for it and closed again. For tests that check what a store holds after
 * something else (a killed import, an import --nar), not the command.
 */
export async function exportNarOutput(url: string, target: string): Promise<Buffer> {
  const store = await openStore({ url, mustExist: true })
  try {
    return await exportNarOf(store, target)
  } finally {
    await store.close()
  }
}

/**
 * `fn` on a store opened in this process for it, closed after: for reading
 * back what a command or a daemon left (NARs, the paths listed), which is
 * not the CLI under test, without a process start and its connections.
 */
export async function withStore<T>(opts: OpenStoreOptions, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(opts)
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

/** Stdout of `export-nar TARGET` on an open store, in-process. */
export async function exportNarOf(store: Store, target: string): Promise<Buffer> {
  return readAll(await exportNar(store, target))
}

/** What `import PATH...` prints (one store path each), in-process, in one write session as the command runs it. */
export function importInProcess(store: Store, paths: string[]): Promise<string[]> {
  return inWriteSession(store, async (store) => {
    const out: string[] = []
    for (const p of paths) out.push((await importPath(store, p)).storePath)
    return out
  })
}

/** What `import --nar … --name NAME --store URL` does, in-process: the store opened and closed as the command does. */
export async function importNarInProcess(url: string, nar: AsyncIterable<Uint8Array>, name = 'bad'): Promise<string> {
  const store = await openStore({ url })
  try {
    return (await inWriteSession(store, (store) => importNar(store, nar, name))).storePath
  } finally {
    await store.close()
  }
}

/** What `verify --store URL` finds, in-process (it prints the problems, removals and additions, one a line). */
export async function verifyReport(url: string): Promise<VerifyReport> {
  const store = await openStore({ url, mustExist: true })
  try {
    return await verifyStore(store)
  } finally {
    await store.close()
  }
}

/** Stdout of `ls FLAGS TARGET` (flags as `nix store ls` takes them: -l, -R, -d, --json, combined as -lR). */
export async function lsOutput(store: Store, flags: string[], target: string): Promise<Buffer> {
  const letters = flags.filter((f) => /^-[a-zA-Z]+$/.test(f)).join('')
  const recursive = letters.includes('R')
  // As the command prints it: --json without a newline (as Nix), text one line per entry.
  if (flags.includes('--json')) return Buffer.from(listingToJson(await listJson(store, target, { recursive })))
  return readAll(batchLines(listText(store, target, { long: letters.includes('l'), recursive, directory: letters.includes('d') })))
}

/** What a command prints for `run`: its stdout when it succeeds, its `error: …` line when it fails. */
export async function outputOrError(run: () => Promise<Buffer>): Promise<{ ok: true; stdout: Buffer } | { ok: false; error: string }> {
  try {
    return { ok: true, stdout: await run() }
  } catch (e) {
    return { ok: false, error: `error: ${(e as Error).message}` }
  }
}

/** Stdout of `path-info FLAGS PATHS` in text (flags as Nix takes them: -r -s -S -h combined, --sigs, --all, and the long forms). */
export async function pathInfoOutput(store: Store, flags: string[], paths: string[]): Promise<string> {
  const letters = flags.filter((f) => /^-[a-zA-Z]+$/.test(f)).join('')
  const has = (letter: string, long: string) => letters.includes(letter) || flags.includes(long)
  const entries = await queryPathInfos(store, paths, { all: flags.includes('--all'), recursive: has('r', '--recursive'), closureSize: has('S', '--closure-size') })
  const columns = { size: has('s', '--size'), closureSize: has('S', '--closure-size'), sigs: flags.includes('--sigs'), humanReadable: has('h', '--human-readable') }
  return pathInfoLines(referencesFirst(entries), columns)
}
