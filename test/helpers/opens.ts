import fs from 'node:fs'

/**
 * The paths `which` accepts that `fn` opens through fs.openSync (how the
 * store opens its index files and an import the files it reads): a count
 * of what a command reads, asserted without timing it.
 */
export async function opensOf<T>(which: (p: string) => boolean, fn: () => Promise<T>): Promise<{ result: T; opened: string[] }> {
  const original = fs.openSync
  const opened: string[] = []
  fs.openSync = ((p: fs.PathLike, ...rest: unknown[]) => {
    if (which(String(p))) opened.push(String(p))
    return (original as (...a: unknown[]) => number)(p, ...rest)
  }) as typeof fs.openSync
  try {
    return { result: await fn(), opened }
  } finally {
    fs.openSync = original
  }
}
